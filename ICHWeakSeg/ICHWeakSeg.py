"""ICH WeakSeg: intracranial haemorrhage on CT (weakly supervised).

The weakly supervised ICH segmentation pipeline is not in this version of LesionSuite yet; this module only has its
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


class ICHWeakSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("ICH WeakSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "LesionSuite")]
        self.parent.dependencies = ["LesionSuite"]
        self.parent.contributors = ["LesionSuite contributors"]
        self.parent.helpText = _(
            "This module will provide intracranial haemorrhage (ICH) segmentation on non-contrast "
            "CT learned from image-level labels only: class activation maps from a classifier "
            "that looks at neighbouring slices, refined into pseudo-masks that train a "
            "segmentation network. The weakly supervised ICH segmentation pipeline is not "
            "available yet in this version of LesionSuite: the module shows only an input "
            "selector and runs nothing.")
        self.parent.acknowledgementText = _(
            "Part of the LesionSuite extension; see the LesionSuite module for dependencies, "
            "compute device and installed models.")


class ICHWeakSegWidget(ScriptedLoadableModuleWidget):
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ICHWeakSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)


class ICHWeakSegTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_module_loads()

    def test_module_loads(self):
        self.assertTrue(hasattr(slicer.modules, "ichweakseg"))
        widget = slicer.util.getModuleWidget("ICHWeakSeg")
        self.assertIn("not available yet", widget.ui.statusLabel.text)
        self.assertEqual(list(widget.ui.inputSelector.nodeTypes), ["vtkMRMLScalarVolumeNode"])
