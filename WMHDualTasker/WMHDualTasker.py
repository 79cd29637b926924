"""WMH DualTasker: white matter hyperintensities and ARWMC ratings (WMH-DualTasker, deep-T1-WMH).

The WMH-DualTasker pipeline is not in this version of LesionSuite yet; this module only has its
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


class WMHDualTasker(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("WMH DualTasker")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "LesionSuite")]
        self.parent.dependencies = ["LesionSuite"]
        self.parent.contributors = ["LesionSuite contributors"]
        self.parent.helpText = _(
            "This module will provide white matter hyperintensity (WMH) segmentation together "
            "with prediction of the ARWMC visual rating (0-30), learned from ratings as the only "
            "supervision (WMH-DualTasker), and WMH segmentation from 3D T1 alone, taught from "
            "labels made on thick-slice FLAIR (deep-T1-WMH). The WMH-DualTasker pipeline is not "
            "available yet in this version of LesionSuite: the module shows only an input "
            "selector and runs nothing.")
        self.parent.acknowledgementText = _(
            "Part of the LesionSuite extension; see the LesionSuite module for dependencies, "
            "compute device and installed models.")


class WMHDualTaskerWidget(ScriptedLoadableModuleWidget):
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/WMHDualTasker.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)


class WMHDualTaskerTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_module_loads()

    def test_module_loads(self):
        self.assertTrue(hasattr(slicer.modules, "wmhdualtasker"))
        widget = slicer.util.getModuleWidget("WMHDualTasker")
        self.assertIn("not available yet", widget.ui.statusLabel.text)
        self.assertEqual(list(widget.ui.inputSelector.nodeTypes), ["vtkMRMLScalarVolumeNode"])
