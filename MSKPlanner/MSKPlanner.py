"""MSK Planner: the desktop 3D Slicer module; MSKPlannerLib does the work, headless too."""

import logging

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from MSKPriorsLib.app_context import AppContext


class MSKPlanner(ScriptedLoadableModule):
    """Module description shown in Slicer's module list."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MSK Planner"
        self.parent.categories = ["MSK Workbench"]
        self.parent.dependencies = []
        self.parent.contributors = ["MSK Workbench developers"]
        self.parent.helpText = (
            "Segment bones from CT into 3D surfaces, measure Cobb angle, lower-limb alignment"
            " and hip geometry, calibrate radiographs, template implants and send the results"
            " to the PACS."
        )
        self.parent.acknowledgementText = (
            "Built on 3D Slicer's MRML, SimpleITK, pydicom, highdicom and dicomweb-client."
        )


class MSKPlannerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel; it calls only the Logic adapter."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None

    def setup(self) -> None:
        """Load the panel from its .ui file and create the Logic adapter."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MSKPlanner.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MSKPlannerLogic()

    def cleanup(self) -> None:
        """Remove observers when the module is closed."""
        self.removeObservers()


class MSKPlannerLogic(ScriptedLoadableModuleLogic):
    """Adapter between the widget and MSKPlannerLib; hands the application's scene down."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.context = AppContext.from_application_logic(
            slicer.mrmlScene, slicer.app.applicationLogic()
        )


class MSKPlannerTest(ScriptedLoadableModuleTest):
    """Runs the Logic adapter inside Slicer on generated data."""

    def setUp(self) -> None:
        """Start from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        """Run every test of this module."""
        self.setUp()
        self.test_logic_sees_the_application_scene()

    def test_logic_sees_the_application_scene(self) -> None:
        """The adapter wraps slicer.mrmlScene and finds every module logic it needs."""
        logic = MSKPlannerLogic()
        self.assertIs(logic.context.scene, slicer.mrmlScene)
        line = logic.context.scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode")
        line.AddControlPointWorld(0, 0, 0)
        line.AddControlPointWorld(0, 30, 40)
        self.assertAlmostEqual(line.GetLineLengthWorld(), 50.0)
        logging.info("MSKPlanner logic test passed")
