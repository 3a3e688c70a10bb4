"""MSK Planner: the desktop 3D Slicer module; MSKPlannerLib does the work, headless too."""

import logging
from pathlib import Path
from typing import Annotated

import qt
import slicer
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLNode, vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


class MSKPlanner(ScriptedLoadableModule):
    """Module description shown in Slicer's module list."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MSK Planner"
        self.parent.categories = ["MSK Workbench"]
        self.parent.dependencies = []
        self.parent.contributors = ["MSK Workbench developers"]
        self.parent.helpText = (
            "Segment bones from CT into 3D surfaces, measure Cobb angle, lower-limb alignment "
            "and hip geometry, calibrate radiographs, template implants and send the results "
            "to the PACS."
        )
        self.parent.acknowledgementText = (
            "Built on 3D Slicer's MRML, SimpleITK, pydicom, highdicom and dicomweb-client."
        )


@parameterNodeWrapper
class MSKPlannerParameterNode:
    """What the panel shows, saved with the scene."""

    inputVolume: vtkMRMLScalarVolumeNode
    thresholdPreset: Annotated[str, Choice(["cortical", "cancellous"])] = "cortical"
    labelsPath: Path = Path()
    decimationFactor: Annotated[float, WithinRange(0.0, 0.95)] = 0.0
    exportFrame: Annotated[str, Choice(["RAS", "LPS"])] = "RAS"
    radiographVolume: vtkMRMLScalarVolumeNode
    calibrationMethod: Annotated[
        str, Choice(["tags", "calibration_ball", "known_length", "fixed_magnification"])
    ] = "tags"
    ballDiameterMm: Annotated[float, WithinRange(5.0, 60.0)] = 25.0
    knownLengthMm: Annotated[float, WithinRange(1.0, 1000.0)] = 100.0
    magnificationFactor: Annotated[float, WithinRange(1.0, 1.5)] = 1.15
    landmarksNode: vtkMRMLMarkupsFiducialNode
    side: Annotated[str, Choice(["from landmarks", "left", "right"])] = "from landmarks"
    vertebraLabels: vtkMRMLNode
    implantFamily: Annotated[str, Choice(["cup", "stem", "knee_femoral", "knee_tibial"])] = "cup"
    caseFolder: Path = Path.home() / "MSKWorkbench" / "case"
    pushToPacs: bool = False
    reportServer: str = ""


class MSKPlannerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel; it calls only the Logic adapter."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        """Load the panel from its .ui file, connect buttons and the parameter node."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MSKPlanner.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MSKPlannerLogic()

        self.ui.reconstructButton.connect("clicked(bool)", self.onReconstructButton)
        self.ui.calibrateButton.connect("clicked(bool)", self.onCalibrateButton)
        self.ui.measureAlignmentButton.connect("clicked(bool)", self.onMeasureAlignmentButton)
        self.ui.measureCobbButton.connect("clicked(bool)", self.onMeasureCobbButton)
        self.ui.measureHipButton.connect("clicked(bool)", self.onMeasureHipButton)
        self.ui.templateButton.connect("clicked(bool)", self.onTemplateButton)
        self.ui.reportButton.connect("clicked(bool)", self.onReportButton)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Remove observers when the module is closed."""
        self.removeObservers()

    def enter(self) -> None:
        """Make sure a parameter node exists when the module is shown."""
        self.initializeParameterNode()

    def onSceneStartClose(self, caller, event) -> None:
        """Forget the parameter node before the scene closes."""
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Create a new parameter node after the scene closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Bind the panel to the module's parameter node."""
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode) -> None:
        """Connect the .ui widgets named with SlicerParameterName to the parameter node."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    def _side(self):
        side = self._parameterNode.side
        return None if side == "from landmarks" else side

    def onReconstructButton(self) -> None:
        """Segment the bones of the CT and build their surfaces."""
        with slicer.util.tryWithErrorDisplay("Bone reconstruction failed.", waitCursor=True):
            node = self._parameterNode
            labels = node.labelsPath if str(node.labelsPath) not in ("", ".") else None
            rows = self.logic.reconstruct(
                node.inputVolume,
                node.thresholdPreset,
                labels,
                node.decimationFactor,
                node.exportFrame,
                node.caseFolder / "surfaces",
            )
            self._fillTable(self.ui.bonesTableWidget, rows)

    def onCalibrateButton(self) -> None:
        """Calibrate the radiograph with the chosen method."""
        with slicer.util.tryWithErrorDisplay("Calibration failed.", waitCursor=True):
            node = self._parameterNode
            text = self.logic.calibrate(
                node.radiographVolume,
                node.calibrationMethod,
                dicom_file=self._dicomFileOf(node.radiographVolume),
                ball_diameter_mm=node.ballDiameterMm,
                known_length_mm=node.knownLengthMm,
                known_points_ras_mm=self._knownLengthPoints(),
                magnification_factor=node.magnificationFactor,
            )
            self.ui.calibrationStatusLabel.text = text

    def _dicomFileOf(self, volumeNode):
        """The DICOM file a volume was loaded from, through Slicer's DICOM database."""
        if volumeNode is None:
            return None
        instanceUids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
        if not instanceUids or not slicer.dicomDatabase:
            return None
        fileName = slicer.dicomDatabase.fileForInstance(instanceUids[0])
        return Path(fileName) if fileName else None

    def _knownLengthPoints(self):
        """The two points of a line markups named 'known_length', if the user placed one."""
        line = slicer.mrmlScene.GetFirstNodeByName("known_length")
        if line is None or line.GetNumberOfControlPoints() != 2:
            return None
        return [line.GetNthControlPointPositionWorld(index) for index in range(2)]

    def _showTable(self, table) -> None:
        """Refresh the measurement table after a landmark moved."""
        rows = [
            (r.key, f"{r.value:.1f}", r.unit, r.method, r.calibration.method) for r in table.rows
        ]
        rows += [(key, "not measured", "", why, "") for key, why in table.not_measured.items()]
        self._fillTable(self.ui.measurementsTableWidget, rows)

    def _measure(self, family: str) -> None:
        with slicer.util.tryWithErrorDisplay(f"The {family} measurement failed.", waitCursor=True):
            node = self._parameterNode
            rows = self.logic.measure(
                family,
                node.landmarksNode,
                self._side(),
                vertebra_labels=node.vertebraLabels if family == "cobb" else None,
                image_node=node.radiographVolume or node.inputVolume,
                on_update=self._showTable,
            )
            self._fillTable(self.ui.measurementsTableWidget, rows)

    def onMeasureAlignmentButton(self) -> None:
        """Measure HKA, mLDFA, MPTA, JLCA and mechanical axis deviation."""
        self._measure("alignment")

    def onMeasureCobbButton(self) -> None:
        """Measure the Cobb angle from endplate lines or vertebra labels."""
        self._measure("cobb")

    def onMeasureHipButton(self) -> None:
        """Measure femoral offset, cup inclination, CCD angle and leg-length difference."""
        self._measure("hip")

    def onTemplateButton(self) -> None:
        """Suggest an implant size on the calibrated radiograph and place its outline."""
        with slicer.util.tryWithErrorDisplay("Templating failed.", waitCursor=True):
            node = self._parameterNode
            self.ui.suggestedSizeLabel.text = self.logic.template(
                node.radiographVolume, node.landmarksNode, node.implantFamily, self._side()
            )

    def onReportButton(self) -> None:
        """Write SR, SEG and key images to the case folder, and send them when asked."""
        with slicer.util.tryWithErrorDisplay("Writing the report failed.", waitCursor=True):
            node = self._parameterNode
            written = self.logic.write_report(
                node.caseFolder, node.pushToPacs, node.reportServer or None
            )
            slicer.util.infoDisplay(f"Wrote {len(written)} DICOM objects to {node.caseFolder}.")

    def _fillTable(self, table, rows) -> None:
        table.setRowCount(len(rows))
        for rowIndex, row in enumerate(rows):
            for columnIndex, value in enumerate(row):
                table.setItem(rowIndex, columnIndex, qt.QTableWidgetItem(str(value)))
        table.resizeColumnsToContents()


class MSKPlannerLogic(ScriptedLoadableModuleLogic):
    """Adapter between the widget and MSKPlannerLib; hands the application's scene down.

    The PlannerLogic of MSKPlannerLib does the work; its methods are reached through this object.
    Packages that Slicer's Python lacks are installed before it is first created.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        from MSKPriorsLib.runtime_packages import install_missing

        install_missing(slicer.util.pip_install)
        from MSKPlannerLib.planner_logic import PlannerLogic
        from MSKPriorsLib.app_context import AppContext

        context = AppContext.from_application_logic(slicer.mrmlScene, slicer.app.applicationLogic())
        self.core = PlannerLogic(context)

    def __getattr__(self, name):
        core = self.__dict__.get("core")
        if core is None:
            raise AttributeError(name)
        return getattr(core, name)

    def getParameterNode(self):
        """The module's typed parameter node."""
        return MSKPlannerParameterNode(super().getParameterNode())


class MSKPlannerTest(ScriptedLoadableModuleTest):
    """Runs the Logic adapter inside Slicer on generated data."""

    def setUp(self) -> None:
        """Start from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        """Run every test of this module."""
        self.setUp()
        self.test_reconstruct_generated_bone()
        self.setUp()
        self.test_alignment_from_generated_landmarks()

    def test_reconstruct_generated_bone(self) -> None:
        """A generated cylinder of bone becomes one closed surface of the right volume."""
        import numpy as np

        from MSKPriorsLib.mrml_volumes import add_volume_from_array

        k, j, i = np.mgrid[0:50, 0:40, 0:40]
        inside = ((i - 20) ** 2 + (j - 20) ** 2 < 64) & (k >= 5) & (k < 45)
        hounsfield = np.where(inside, 1000, 40).astype(np.int16)
        volume = add_volume_from_array(
            slicer.mrmlScene, hounsfield, np.diag([-1.0, -1.0, 1.0, 1.0]), "CT"
        )
        rows = MSKPlannerLogic().reconstruct(volume, "cortical")
        self.assertEqual(len(rows), 1)
        self.assertTrue(rows[0][3])
        self.assertAlmostEqual(rows[0][1], np.pi * 64 * 40 / 1000, delta=0.4)

    def test_alignment_from_generated_landmarks(self) -> None:
        """Generated landmarks with known angles give their HKA."""
        import tempfile

        from MSKPlannerLib.landmarks import write_markups_json
        from MSKPlannerLib.measurement_nodes import load_landmark_file
        from MSKPlannerLib.measurement_phantoms import alignment_landmarks

        logic = MSKPlannerLogic()
        points, expected = alignment_landmarks("left", 87.0, 87.0)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "leg_left.mrk.json"
            write_markups_json(path, points, name="leg left")
            landmarks = load_landmark_file(logic.context.markups_logic, slicer.mrmlScene, path)[0]
        rows = logic.measure("alignment", landmarks, "left")
        values = {row[0]: row[1] for row in rows}
        self.assertAlmostEqual(float(values["hka_deg"]), expected["hka_deg"], delta=0.1)
        logging.info("MSKPlanner logic tests passed")
