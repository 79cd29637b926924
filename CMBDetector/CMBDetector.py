"""CMB Detector: cerebral microbleeds (SHIVA-CMB, knowledge-distilled candidate classification).

The CMB detection pipeline is not in this version of LesionSuite yet; this module only has its
place in the Slicer GUI (an input selector and a status line) and runs nothing.
"""

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)


class CMBDetector(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("CMB Detector")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "LesionSuite")]
        self.parent.dependencies = ["LesionSuite"]
        self.parent.contributors = ["LesionSuite contributors"]
        self.parent.helpText = _(
            "This module will provide cerebral microbleed (CMB) detection on SWI or T2*-GRE: a 3D "
            "U-Net that segments candidates (SHIVA-CMB), then a student classifier distilled from "
            "a teacher that tells microbleeds from mimics, then morphological clean-up, with "
            "review of each candidate. The CMB detection pipeline is not available yet in this "
            "version of LesionSuite: the module shows only an input selector and runs nothing.")
        self.parent.acknowledgementText = _(
            "Part of the LesionSuite extension; see the LesionSuite module for dependencies, "
            "compute device and installed models.")


class CMBDetectorWidget(ScriptedLoadableModuleWidget):
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CMBDetector.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)


class CMBDetectorTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_module_loads()

    def test_module_loads(self):
        self.assertTrue(hasattr(slicer.modules, "cmbdetector"))
        widget = slicer.util.getModuleWidget("CMBDetector")
        self.assertIn("not available yet", widget.ui.statusLabel.text)
        self.assertEqual(list(widget.ui.inputSelector.nodeTypes), ["vtkMRMLScalarVolumeNode"])
