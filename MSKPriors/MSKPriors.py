"""MSK Priors: the desktop 3D Slicer module; MSKPriorsLib does the work, headless too."""

import logging
from pathlib import Path
from typing import Annotated

import qt
import slicer
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


class MSKPriors(ScriptedLoadableModule):
    """Module description shown in Slicer's module list."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MSK Priors"
        self.parent.categories = ["MSK Workbench"]
        self.parent.dependencies = []
        self.parent.contributors = ["MSK Workbench developers"]
        self.parent.helpText = (
            "Find the current study and the same patient's prior studies on DICOMweb PACS "
            "servers, retrieve them into a local archive and show current and priors side by "
            "side with registered, linked views."
        )
        self.parent.acknowledgementText = (
            "Built on 3D Slicer's MRML, SimpleITK, pydicom, highdicom and dicomweb-client."
        )


@parameterNodeWrapper
class MSKPriorsParameterNode:
    """What the panel shows, saved with the scene. Passwords and tokens are never stored here."""

    serverUrl: str = ""
    authKind: Annotated[str, Choice(["none", "basic", "bearer"])] = "none"
    username: str = ""
    verifyTls: bool = True
    archiveFolder: Path = Path.home() / "MSKWorkbench" / "archive"
    patientId: str = ""
    displayPreset: Annotated[str, Choice(["ct-bone", "ct-soft-tissue", "auto"])] = "ct-bone"
    registerPriors: bool = True
    linkViews: bool = True


class MSKPriorsWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel; it calls only the Logic adapter."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._studies = []
        self._priors = None

    def setup(self) -> None:
        """Load the panel from its .ui file, connect buttons and the parameter node."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MSKPriors.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MSKPriorsLogic()

        self.ui.serverComboBox.addItems(["", *self.logic.configured_server_names()])
        self.ui.serverComboBox.currentTextChanged.connect(self.onServerChosen)
        self.ui.searchButton.connect("clicked(bool)", self.onSearchButton)
        self.ui.retrieveButton.connect("clicked(bool)", self.onRetrieveButton)
        self.ui.loadButton.connect("clicked(bool)", self.onLoadButton)
        self.ui.studiesTableWidget.itemSelectionChanged.connect(self.onStudySelected)

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

    def onServerChosen(self, name: str) -> None:
        """Fill the URL and authentication from a configured server."""
        if name:
            self._parameterNode.serverUrl, self._parameterNode.authKind = (
                self.logic.describe_server(name)
            )

    def _connect(self) -> None:
        node = self._parameterNode
        self.logic.connect(
            server_name=self.ui.serverComboBox.currentText,
            server_url=node.serverUrl,
            auth_kind=node.authKind,
            username=node.username,
            secret=self.ui.secretLineEdit.text,
            verify_tls=node.verifyTls,
            archive_folder=node.archiveFolder,
        )

    def onSearchButton(self) -> None:
        """Search the server, or the archive, for the patient's studies."""
        with slicer.util.tryWithErrorDisplay("Search failed.", waitCursor=True):
            self._connect()
            self._studies = self.logic.search_studies(self._parameterNode.patientId)
            rows = [self.logic.study_row(study) for study in self._studies]
            self._fillTable(self.ui.studiesTableWidget, rows)

    def onStudySelected(self) -> None:
        """Rank the priors of the selected study and list them with their reasons."""
        selected = self.ui.studiesTableWidget.selectionModel().selectedRows()
        if not selected:
            return
        with slicer.util.tryWithErrorDisplay("Prior search failed.", waitCursor=True):
            current = self._studies[selected[0].row()]
            self._priors = self.logic.find_priors(current)
            self._fillTable(self.ui.priorsTableWidget, self.logic.prior_rows(self._priors))
            self._fillTable(self.ui.rejectedTableWidget, self.logic.rejected_rows(self._priors))

    def onRetrieveButton(self) -> None:
        """Retrieve the current study and its priors into the archive, with progress."""
        if self._priors is None:
            slicer.util.errorDisplay("Select a current study first.")
            return
        progress = slicer.util.createProgressDialog(labelText="Retrieving studies", maximum=100)
        try:
            with slicer.util.tryWithErrorDisplay("Retrieval failed.", waitCursor=True):

                def report(done: int, total: int) -> None:
                    progress.setValue(int(100 * done / max(total, 1)))
                    self.ui.retrieveProgressBar.setValue(progress.value)
                    slicer.app.processEvents()

                folders = self.logic.retrieve(self._priors, report)
                self._importIntoDicomDatabase(folders)
        finally:
            progress.close()

    def _importIntoDicomDatabase(self, folders) -> None:
        """Let the rest of Slicer see the retrieved files through its DICOM database."""
        from DICOMLib import DICOMUtils

        for folder in folders:
            DICOMUtils.importDicom(str(folder))

    def onLoadButton(self) -> None:
        """Load current and priors side by side with the hanging protocol and preset."""
        if self._priors is None:
            slicer.util.errorDisplay("Select a current study first.")
            return
        with slicer.util.tryWithErrorDisplay("Loading failed.", waitCursor=True):
            node = self._parameterNode
            # The hanging plan sets the scene's layout node and slice composite nodes, which
            # the desktop layout manager follows.
            comparison = self.logic.load_comparison(
                self._priors, node.displayPreset, node.registerPriors, node.linkViews
            )
            if comparison.warnings:
                slicer.util.warningDisplay("\n".join(comparison.warnings), windowTitle="Geometry")

    def _fillTable(self, table, rows) -> None:
        table.setRowCount(len(rows))
        for rowIndex, row in enumerate(rows):
            for columnIndex, value in enumerate(row):
                table.setItem(rowIndex, columnIndex, qt.QTableWidgetItem(str(value)))
        table.resizeColumnsToContents()


class MSKPriorsLogic(ScriptedLoadableModuleLogic):
    """Adapter between the widget and MSKPriorsLib; hands the application's scene down.

    The PriorsLogic of MSKPriorsLib does the work; its methods are reached through this object.
    Packages that Slicer's Python lacks are installed before it is first created.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        from MSKPriorsLib.runtime_packages import install_missing

        install_missing(slicer.util.pip_install)
        from MSKPriorsLib.app_context import AppContext
        from MSKPriorsLib.priors_logic import PriorsLogic

        context = AppContext.from_application_logic(slicer.mrmlScene, slicer.app.applicationLogic())
        self.core = PriorsLogic(context)

    def __getattr__(self, name):
        core = self.__dict__.get("core")
        if core is None:
            raise AttributeError(name)
        return getattr(core, name)

    def getParameterNode(self):
        """The module's typed parameter node."""
        return MSKPriorsParameterNode(super().getParameterNode())


class MSKPriorsTest(ScriptedLoadableModuleTest):
    """Runs the Logic adapter inside Slicer on generated data."""

    def setUp(self) -> None:
        """Start from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        """Run every test of this module."""
        self.setUp()
        self.test_logic_sees_the_application_scene()
        self.setUp()
        self.test_archive_search_and_priors_on_generated_studies()

    def test_logic_sees_the_application_scene(self) -> None:
        """The adapter wraps slicer.mrmlScene and finds every module logic it needs."""
        logic = MSKPriorsLogic()
        self.assertIs(logic.context.scene, slicer.mrmlScene)

    def test_archive_search_and_priors_on_generated_studies(self) -> None:
        """Generated studies in a temporary archive are found and their priors ranked."""
        import tempfile

        from MSKPlannerLib.demo_case import build_demo_archive

        logic = MSKPriorsLogic()
        with tempfile.TemporaryDirectory() as folder:
            case, archiveFolder = build_demo_archive(Path(folder))
            logic.connect(archive_folder=archiveFolder)
            studies = logic.search_studies(case.patient_id)
            current = next(s for s in studies if s.study_uid == case.current_study_uid)
            priors = logic.find_priors(current)
            self.assertEqual(priors.priors[0].study.study_uid, case.prior_study_uid)
            self.assertEqual(len(logic.rejected_rows(priors)), 1)
            comparison = logic.load_comparison(priors, "ct-bone", True, True)
            self.assertGreaterEqual(len(comparison.volumes_by_view), 2)
        logging.info("MSKPriors logic tests passed")
