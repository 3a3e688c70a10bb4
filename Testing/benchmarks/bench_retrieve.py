"""Retrieval throughput and memory: our client against dicomweb-client and curl.

Builds CT series of 512x512 slices from the real TotalSegmentator CT volume (resampled,
uncompressed), stores them in a private Orthanc, then retrieves each series with

(a) ``ours``: one streamed WADO-RS request into a fresh local archive (each instance checked,
    fsynced in batches, renamed into place and indexed);
(b) ``ours-no-fsync``: the same without making anything durable;
(c) ``dicomweb-client`` one instance after another, each written to its own file, the way
    3D Slicer's DICOMweb import does;
(d) ``curl`` of the same WADO-RS series request (same URL and headers), raw answer to one
    file, nothing synced;
(e) ``curl-fsync``: the same, then the file fsynced (what durability costs for one file;
    shown for reference, not a target);
(f) ``parts-durable``: our client's streamed request with a bare receiver that writes each
    part to its own file, fsyncs and renames them 64 at a time, and nothing else (no header
    check, no index): what the transfer and the per-instance files cost by themselves;
(g) ``parts-durable-checked``: the same plus the archive's header check of each part, to
    show what that check costs (both for reference, not targets).

So that the comparison is fair:

- every method runs in a process of its own; the clock covers the transfer only: ours and
  dicomweb-client start it after their imports (and ours after opening the archive, with
  the series record given, as curl is given the URL); curl's figure is its own
  ``time_total`` (connection and transfer, not the start of the curl program);
- curl sends exactly our request headers (the Accept value of
  :data:`MSKPriorsLib.dicomweb.DICOM_ACCEPT` and ``Accept-Encoding: identity``), so Orthanc
  sends the same bytes to both, untranscoded and uncompressed (the curl worker imports
  nothing heavy: a child's peak memory counts the process it was forked from);
- MB/s divides the series' instance bytes (the same number for every method) by the time;
- the methods take turns within each round (the machine's load drifts), every run is
  printed, and ratios are taken within a round;
- outputs go under ``--scratch`` (default ``~/.cache/mskwb-bench-retrieve``, where an archive
  would live) and are kept until the end, with the page cache flushed (``sync``) between
  runs, outside the clock: in ``/tmp`` of a machine whose tests create and delete many
  files, and right after deleting a previous run's hundreds of files, creating each file
  costs ext4 without a journal up to 1 ms (it skips recently freed inodes), which weighs on
  the methods that write one file per instance and not on curl. The figure printed first is
  that cost in the scratch folder.

Peak memory is each process's VmHWM (for curl, the curl child's). Run with two series
sizes to show whether memory grows with the series::

    .venv/bin/python Testing/benchmarks/bench_retrieve.py --sizes 150 300 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mskworkbench.local_orthanc import LocalOrthanc

WORKER_FLAG = "--worker"
PASSWORD_VARIABLE = "BENCH_PACS_PASSWORD"
METHODS = (
    "ours",
    "ours-no-fsync",
    "dicomweb-client",
    "curl",
    "curl-fsync",
    "parts-durable",
    "parts-durable-checked",
)


def build_series(count: int, folder: Path, shared: Path) -> list[Path]:
    """Write ``count`` uncompressed 512x512 CT slices made from the real volume."""
    import nibabel
    import numpy as np
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    from scipy import ndimage

    volume = np.asarray(nibabel.load(shared / "totalsegmentator" / "ct_volume.nii.gz").dataobj)
    zoom = (512 / volume.shape[0], 512 / volume.shape[1], count / volume.shape[2])
    resampled = ndimage.zoom(volume.astype(np.float32), zoom, order=1)
    pixels = np.clip(resampled + 1024, 0, 4095).astype(np.uint16)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientID, ds.PatientName = "BENCH1", "Bench^Retrieve"
        ds.Modality, ds.StudyDate, ds.SeriesNumber = "CT", "20240101", 1
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(index)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 1.0
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = np.ascontiguousarray(pixels[:, :, index].T).tobytes()
        path = folder / f"ct{index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def peak_resident_mb() -> float:
    """This process's peak resident memory (VmHWM, reset at exec unlike ru_maxrss), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s(who: int) -> float:
    """User plus system CPU seconds of ``resource.RUSAGE_SELF`` or ``RUSAGE_CHILDREN``."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_curl(url: str, user: str, password: str, target: Path, sync: bool) -> float:
    """Fetch ``url`` with our request headers into ``target``; return curl's own seconds."""
    answer = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail",
            "--config",
            "-",
            "-H",
            f"Accept: {os.environ['BENCH_ACCEPT']}",
            "-H",
            "Accept-Encoding: identity",
            "-o",
            str(target),
            "-w",
            "%{time_total}",
            url,
        ],
        input=f'user = "{user}:{password}"\n'.encode(),
        capture_output=True,
        check=True,
    )
    seconds = float(answer.stdout.decode())
    if sync:
        started = time.perf_counter()
        for path in (target, target.parent):
            descriptor = os.open(path, os.O_RDONLY)
            os.fsync(descriptor)
            os.close(descriptor)
        seconds += time.perf_counter() - started
    return seconds


def bare_parts(client: object, study: str, series: str, out_dir: Path, check: bool) -> int:
    """Stream a series into one file per part, durable in batches; optionally check each."""
    from MSKPriorsLib.durable_files import fsync_folders, fsync_path, start_writeback
    from MSKPriorsLib.retrieval_checks import HEAD_BYTES, ReceivedFile, check_received
    from MSKPriorsLib.retrieval_multipart import PartReceiver

    class BareReceiver(PartReceiver):
        def __init__(self) -> None:
            self.count, self.size, self.descriptor = 0, 0, -1
            self.path = out_dir / "none.part"
            self.head = bytearray()
            self.batch: list[Path] = []

        def begin(self, headers: object) -> None:
            self.path = out_dir / f"{self.count}.part"
            self.descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            self.head, self.size = bytearray(), 0

        def data(self, chunk: memoryview) -> None:
            if check and len(self.head) < HEAD_BYTES:
                self.head += chunk[: HEAD_BYTES - len(self.head)]
            self.size += len(chunk)
            while chunk:
                chunk = chunk[os.write(self.descriptor, chunk) :]

        def end(self) -> None:
            start_writeback(self.descriptor)
            os.close(self.descriptor)
            if check:
                check_received(ReceivedFile(self.path, self.size, bytes(self.head), b""))
            self.batch.append(self.path)
            self.count += 1
            if len(self.batch) >= 64:
                self.commit()

        def commit(self) -> None:
            for path in self.batch:
                fsync_path(path)
                os.replace(path, path.with_suffix(".dcm"))
            fsync_folders([out_dir])
            self.batch = []

    receiver = BareReceiver()
    client.stream_series(study, series, receiver)  # type: ignore[attr-defined]
    receiver.commit()
    return sum(path.stat().st_size for path in out_dir.glob("*.dcm"))


def worker(method: str, url: str, user: str, study: str, series: str, out: str) -> None:
    """Retrieve one series by ``method`` into ``out`` and print a JSON line of figures."""
    password = os.environ[PASSWORD_VARIABLE]
    out_dir = Path(out)
    received = 0
    if method.startswith("ours"):
        from MSKPriorsLib.archive import LocalArchive
        from MSKPriorsLib.dicomweb import DicomWebClient
        from MSKPriorsLib.records import SeriesRecord
        from MSKPriorsLib.retrieval import retrieve_into_archive
        from MSKPriorsLib.servers import PacsServer

        server = PacsServer("bench", url, "basic", user, password_env=PASSWORD_VARIABLE)
        count = int(os.environ["BENCH_INSTANCES"])
        record = SeriesRecord(series, study, number_of_instances=count)
        with DicomWebClient(server) as client, LocalArchive(out_dir) as archive:
            cpu_before, started = cpu_s(resource.RUSAGE_SELF), time.perf_counter()
            result = retrieve_into_archive(client, archive, [record], durable=method == "ours")
            seconds = time.perf_counter() - started
        assert not result.failures, result.failures
        received = result.bytes_received
    elif method.startswith("parts-durable"):
        from MSKPriorsLib.dicomweb import DicomWebClient
        from MSKPriorsLib.servers import PacsServer

        server = PacsServer("bench", url, "basic", user, password_env=PASSWORD_VARIABLE)
        with DicomWebClient(server) as client:
            cpu_before, started = cpu_s(resource.RUSAGE_SELF), time.perf_counter()
            received = bare_parts(client, study, series, out_dir, method.endswith("checked"))
            seconds = time.perf_counter() - started
    elif method == "dicomweb-client":
        import pydicom
        import requests
        from dicomweb_client.api import DICOMwebClient
        from dicomweb_client.session_utils import create_session_from_auth

        session = create_session_from_auth(requests.auth.HTTPBasicAuth(user, password))
        other = DICOMwebClient(url=url, session=session)
        cpu_before, started = cpu_s(resource.RUSAGE_SELF), time.perf_counter()
        for item in other.search_for_instances(study, series):
            sop = item["00080018"]["Value"][0]
            dataset = other.retrieve_instance(study, series, sop)
            target = out_dir / f"{sop}.dcm"
            pydicom.dcmwrite(target, dataset)
            received += target.stat().st_size
        seconds = time.perf_counter() - started
    else:
        target = out_dir / "series.multipart"
        cpu_before = cpu_s(resource.RUSAGE_CHILDREN)
        request = f"{url}/studies/{study}/series/{series}"
        seconds = run_curl(request, user, password, target, sync=method == "curl-fsync")
        received = target.stat().st_size
    children = method.startswith("curl")
    figures = {
        "seconds": seconds,
        "bytes": received,
        "peak_mb": (
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            if children
            else peak_resident_mb()
        ),
        "cpu_s": cpu_s(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF) - cpu_before,
    }
    print(json.dumps(figures))


def run_method(
    method: str, orthanc: LocalOrthanc, study: str, series: str, count: int, out: Path
) -> dict[str, float]:
    """Run one method in a fresh process; return its figures."""
    from MSKPriorsLib.dicomweb import DICOM_ACCEPT

    out.mkdir(parents=True)
    answer = subprocess.run(
        [
            sys.executable,
            __file__,
            WORKER_FLAG,
            method,
            orthanc.dicomweb_url,
            orthanc.username,
            study,
            series,
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={
            **os.environ,
            PASSWORD_VARIABLE: orthanc.password,
            "BENCH_INSTANCES": str(count),
            "BENCH_ACCEPT": DICOM_ACCEPT,
        },
    )
    os.sync()  # the next run starts with nothing of this one waiting for the disk
    figures: dict[str, float] = json.loads(answer.stdout.strip().splitlines()[-1])
    return figures


def file_creation_ms(folder: Path, count: int = 200) -> float:
    """Mean milliseconds to create one empty file in ``folder`` (the files are kept)."""
    folder.mkdir(parents=True)
    started = time.perf_counter()
    for index in range(count):
        os.close(os.open(folder / f"{index}.probe", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    return (time.perf_counter() - started) / count * 1e3


def main() -> None:
    """Build the series, start Orthanc, run every method in turns, print runs and ratios."""
    import pydicom
    import requests

    from mskworkbench.local_orthanc import LocalOrthanc
    from mskworkbench.shared_data import shared_data_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[150, 300])
    parser.add_argument("--repeat", type=int, default=3, help="rounds (every method once each)")
    parser.add_argument(
        "--scratch",
        type=Path,
        default=Path.home() / ".cache" / "mskwb-bench-retrieve",
        help="folder for the retrieved files (removed at the end)",
    )
    args = parser.parse_args()
    shared = shared_data_path()
    runs_dir = args.scratch / f"run-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="bench-retrieve-") as source:
        orthanc = LocalOrthanc(Path(source) / "orthanc")
        orthanc.start()
        try:
            print(f"creating one file in {runs_dir}: {file_creation_ms(runs_dir / 'probe'):.3f} ms")
            print(
                f"{'instances':>9} {'round':>5} {'method':>16} {'seconds':>8} {'MB':>7} "
                f"{'MB/s':>7} {'peak MB':>8} {'cpu s':>6}"
            )
            for count in args.sizes:
                paths = build_series(count, Path(source) / f"series{count}", shared)
                for path in paths:
                    stored = requests.post(
                        f"{orthanc.url}/instances", data=path.read_bytes(), auth=orthanc.auth
                    )
                    stored.raise_for_status()
                payload = sum(path.stat().st_size for path in paths)
                first = pydicom.dcmread(paths[0], stop_before_pixels=True)
                study, series = first.StudyInstanceUID, first.SeriesInstanceUID
                rates: dict[str, list[float]] = {method: [] for method in METHODS}
                for round_number in range(1, args.repeat + 1):
                    for method in METHODS:
                        out = runs_dir / f"{count}-{round_number}-{method}"
                        figures = run_method(method, orthanc, study, series, count, out)
                        if method == "ours":
                            assert figures["bytes"] == payload, (figures["bytes"], payload)
                        rate = payload / 1e6 / figures["seconds"]
                        rates[method].append(rate)
                        print(
                            f"{count:9d} {round_number:5d} {method:>16} "
                            f"{figures['seconds']:8.3f} {payload / 1e6:7.1f} {rate:7.1f} "
                            f"{figures['peak_mb']:8.1f} {figures['cpu_s']:6.2f}"
                        )
                print_ratios(count, rates)
        finally:
            orthanc.stop()
            shutil.rmtree(runs_dir, ignore_errors=True)


def print_ratios(count: int, rates: dict[str, list[float]]) -> None:
    """Print each method's median MB/s and the ratios of ours to the others, round by round."""
    medians = ", ".join(f"{m} {statistics.median(r):.0f}" for m, r in rates.items())
    print(f"{count:9d} median MB/s: {medians}")
    for name, top, bottom, target in (
        ("ours / curl", "ours", "curl", " (target >= 0.8)"),
        ("ours / dicomweb-client", "ours", "dicomweb-client", " (target >= 2)"),
        ("ours-no-fsync / curl", "ours-no-fsync", "curl", ""),
        ("ours / curl-fsync", "ours", "curl-fsync", ""),
        ("parts-durable / curl", "parts-durable", "curl", ""),
        ("parts-durable-checked / curl", "parts-durable-checked", "curl", ""),
    ):
        ratios = [a / b for a, b in zip(rates[top], rates[bottom], strict=True)]
        listed = " ".join(f"{r:.2f}" for r in ratios)
        print(
            f"{count:9d} ratios {name}: {listed} per round, median "
            f"{statistics.median(ratios):.2f}{target}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == WORKER_FLAG:
        worker(*sys.argv[2:8])
    else:
        main()
