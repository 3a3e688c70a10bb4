"""Wall time and peak memory of ``mskwb demo`` and of ``mskwb plan`` on the real-data case.

Run: ``.venv/bin/python Testing/benchmarks/bench_plan.py``

Each case runs in its own Python process, so peak memory is that of the case alone. A
sampling thread reads the process's resident memory (``/proc/self/status`` VmRSS) every
20 ms and attributes each sample to the stage running at the time, so the table shows time
and peak memory per stage (retrieve, load, register, reconstruct, measure, render, write),
with each stage's share of the total. The baseline measured in the same run is the start-up
of a headless scene (imports and ``AppContext.create_headless``), the fixed cost every
command pays.

Cases:

- ``demo``: build the demo patient (real TotalSegmentator CT, prior, radiograph) into a
  local archive, then plan it from the archive (what ``mskwb demo`` does).
- ``plan-pacs``: the same patient stored in a real Orthanc; ``plan --pacs`` retrieves the
  current and prior studies into a fresh archive over DICOMweb and plans them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("setup", "retrieve", "load", "register", "reconstruct", "measure", "render", "write")


def rss_mb() -> float:
    """Resident memory of this process in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


class StageSampler:
    """Samples memory in a thread and keeps the peak per current stage."""

    def __init__(self) -> None:
        self.stage = "setup"
        self.peak_mb: dict[str, float] = {}
        self.started: dict[str, float] = {"setup": time.perf_counter()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_mb()
            self.peak_mb[self.stage] = max(self.peak_mb.get(self.stage, 0.0), value)
            time.sleep(0.02)

    def enter(self, stage: str) -> None:
        self.peak_mb[self.stage] = max(self.peak_mb.get(self.stage, 0.0), rss_mb())
        if stage not in self.started:
            self.started[stage] = time.perf_counter()
        self.stage = stage

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def child(case: str, out_dir: Path, pacs_url: str, case_file: str) -> None:
    """Run one case in this process and print its figures as JSON on the last line."""
    sampler = StageSampler()
    start = time.perf_counter()
    from MSKPlannerLib.case_plan import PlanRequest, plan_case
    from MSKPriorsLib.app_context import AppContext

    context = AppContext.create_headless()
    startup_s = time.perf_counter() - start
    setup_start = time.perf_counter()
    if case == "demo":
        from MSKPlannerLib.demo_case import build_demo_archive
        from mskworkbench.shared_data import shared_data_path

        demo, archive = build_demo_archive(
            out_dir / "demo-case",
            shared_data_path("totalsegmentator", "ct_volume.nii.gz"),
            shared_data_path("totalsegmentator", "ct_volume_vertebrae_labels.nii.gz"),
        )
        request = PlanRequest(
            out_dir=out_dir,
            archive_dir=archive,
            patient_id=demo.patient_id,
            landmark_files=[demo.landmarks_file],
            labels_file=demo.labels_file,
        )
    else:
        described = json.loads(Path(case_file).read_text())
        request = PlanRequest(
            out_dir=out_dir,
            pacs=pacs_url,
            patient_id=described["patient_id"],
            landmark_files=[Path(described["landmarks"])],
            labels_file=Path(described["labels"]),
        )
    setup_s = time.perf_counter() - setup_start
    result = plan_case(request, context, progress=lambda stage, _: sampler.enter(stage))
    total_s = time.perf_counter() - start
    sampler.stop()
    seconds = {"setup": setup_s, **result.seconds}
    print(
        json.dumps(
            {
                "startup_s": startup_s,
                "total_s": total_s,
                "seconds": seconds,
                "peak_mb": sampler.peak_mb,
            }
        )
    )


def run_child(case: str, out_dir: Path, pacs_url: str = "", case_file: str = "") -> dict:
    command = [sys.executable, __file__, "--child", case, str(out_dir), pacs_url, case_file]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(title: str, figures: dict) -> None:
    total = figures["total_s"]
    print(f"\n{title}: total {total:.1f} s, start-up baseline {figures['startup_s']:.2f} s")
    print(f"{'stage':<12}{'seconds':>9}{'share':>8}{'x baseline':>12}{'peak MB':>10}")
    slowest = max(STAGES, key=lambda s: figures["seconds"].get(s, 0.0))
    for stage in STAGES:
        seconds = figures["seconds"].get(stage, 0.0)
        peak = figures["peak_mb"].get(stage, 0.0)
        mark = "  <- slowest" if stage == slowest else ""
        print(
            f"{stage:<12}{seconds:>9.2f}{seconds / total:>8.0%}"
            f"{seconds / figures['startup_s']:>12.1f}{peak:>10.0f}{mark}"
        )
    print(f"{'peak':<12}{'':>29}{max(figures['peak_mb'].values()):>10.0f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), sys.argv[4], sys.argv[5])
        return
    sys.path.insert(0, str(ROOT))
    from MSKPlannerLib import demo_case
    from MSKPriorsLib.dicomweb import DicomWebClient
    from MSKPriorsLib.servers import server_from_url
    from mskworkbench.local_orthanc import LocalOrthanc
    from mskworkbench.shared_data import shared_data_path

    with tempfile.TemporaryDirectory(prefix="bench-plan-") as temporary:
        folder = Path(temporary)
        print_table("demo (archive)", run_child("demo", folder / "demo"))

        case = demo_case.build_demo_dicom(
            folder / "case",
            shared_data_path("totalsegmentator", "ct_volume.nii.gz"),
            shared_data_path("totalsegmentator", "ct_volume_vertebrae_labels.nii.gz"),
        )
        (folder / "case" / "case.json").write_text(
            json.dumps(
                {
                    "patient_id": case.patient_id,
                    "labels": str(case.labels_file),
                    "landmarks": str(case.landmarks_file),
                }
            )
        )
        orthanc = LocalOrthanc(folder / "orthanc")
        orthanc.start()
        try:
            client = DicomWebClient(server_from_url(orthanc.dicomweb_url))
            client.session.auth = orthanc.auth
            files = sorted(case.dicom_folder.rglob("*.dcm"))
            client.store_instances([path.read_bytes() for path in files])
            client.close()
            os.environ["MSKWB_PACS_USERNAME"], os.environ["MSKWB_PACS_PASSWORD"] = orthanc.auth
            figures = run_child(
                "plan-pacs",
                folder / "plan",
                orthanc.dicomweb_url,
                str(folder / "case" / "case.json"),
            )
        finally:
            orthanc.stop()
        print_table(f"plan --pacs (real CT, {len(files)} instances on Orthanc)", figures)


if __name__ == "__main__":
    main()
