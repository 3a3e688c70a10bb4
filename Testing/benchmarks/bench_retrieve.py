"""Retrieval throughput and memory: our client against dicomweb-client and curl.

Builds CT series of 512x512 slices from the real TotalSegmentator CT volume (resampled,
uncompressed), stores them in a private Orthanc, then retrieves each series with

(a) our client: one streamed WADO-RS request into a fresh local archive (files fsynced,
    checked and indexed);
(b) dicomweb-client one instance after another, each written to its own file, the way
    3D Slicer's DICOMweb import does;
(c) curl of the same WADO-RS series request, raw bytes to one file.

Each method runs in its own process; peak memory is that process's ru_maxrss (for curl,
the curl child). Run with two series sizes to show whether memory grows with the series::

    .venv/bin/python Testing/benchmarks/bench_retrieve.py --sizes 150 300
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER_FLAG = "--worker"
PASSWORD_VARIABLE = "BENCH_PACS_PASSWORD"


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


def worker(method: str, url: str, user: str, study: str, series: str) -> None:
    """Retrieve one series by ``method`` and print a JSON line of figures."""
    password = os.environ[PASSWORD_VARIABLE]
    out = Path(tempfile.mkdtemp(prefix=f"bench-{method}-"))
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = 0.0 if method == "curl" else before.ru_utime + before.ru_stime
    started = time.perf_counter()
    received = 0
    if method.startswith("ours"):
        from MSKPriorsLib.archive import LocalArchive
        from MSKPriorsLib.dicomweb import DicomWebClient
        from MSKPriorsLib.retrieval import retrieve_into_archive
        from MSKPriorsLib.servers import PacsServer

        server = PacsServer("bench", url, "basic", user, password_env=PASSWORD_VARIABLE)
        before = resource.getrusage(resource.RUSAGE_SELF)
        cpu_before = before.ru_utime + before.ru_stime
        started = time.perf_counter()
        with DicomWebClient(server) as client, LocalArchive(out) as archive:
            records = client.search_series(study)
            result = retrieve_into_archive(client, archive, records, durable=method == "ours")
        assert not result.failures, result.failures
        received = result.bytes_received
    elif method == "dicomweb-client":
        import pydicom
        import requests
        from dicomweb_client.api import DICOMwebClient
        from dicomweb_client.session_utils import create_session_from_auth

        session = create_session_from_auth(requests.auth.HTTPBasicAuth(user, password))
        client = DICOMwebClient(url=url, session=session)
        before = resource.getrusage(resource.RUSAGE_SELF)
        cpu_before = before.ru_utime + before.ru_stime
        started = time.perf_counter()
        for item in client.search_for_instances(study, series):
            sop = item["00080018"]["Value"][0]
            dataset = client.retrieve_instance(study, series, sop)
            target = out / f"{sop}.dcm"
            pydicom.dcmwrite(target, dataset)
            received += target.stat().st_size
    elif method == "curl":
        target = out / "series.multipart"
        subprocess.run(
            [
                "curl",
                "-sS",
                "--fail",
                "--config",
                "-",
                "-H",
                'Accept: multipart/related; type="application/dicom"',
                "-o",
                str(target),
                f"{url}/studies/{study}/series/{series}",
            ],
            input=f'user = "{user}:{password}"\n'.encode(),
            check=True,
        )
        received = target.stat().st_size
    seconds = time.perf_counter() - started
    peak_mb = (
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if method == "curl"
        else peak_resident_mb()
    )
    usage = resource.getrusage(
        resource.RUSAGE_CHILDREN if method == "curl" else resource.RUSAGE_SELF
    )
    cpu_s = usage.ru_utime + usage.ru_stime - cpu_before
    # Each run writes a whole series: remove it so repeated runs do not fill the disk.
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"seconds": seconds, "bytes": received, "peak_mb": peak_mb, "cpu_s": cpu_s}))


def run_method(method: str, orthanc: object, study: str, series: str) -> dict[str, float]:
    """Run one method in a fresh process and return its figures."""
    answer = subprocess.run(
        [
            sys.executable,
            __file__,
            WORKER_FLAG,
            method,
            orthanc.dicomweb_url,  # type: ignore[attr-defined]
            orthanc.username,  # type: ignore[attr-defined]
            study,
            series,
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, PASSWORD_VARIABLE: orthanc.password},  # type: ignore[attr-defined]
    )
    figures: dict[str, float] = json.loads(answer.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    """Build the series, start Orthanc, run every method, print the table and ratios."""
    import requests

    from mskworkbench.local_orthanc import LocalOrthanc
    from mskworkbench.shared_data import shared_data_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[150, 300])
    parser.add_argument("--repeat", type=int, default=2, help="runs per method (best is kept)")
    args = parser.parse_args()
    shared = shared_data_path()
    methods = ["ours", "ours-no-fsync", "dicomweb-client", "curl"]
    with tempfile.TemporaryDirectory(prefix="bench-retrieve-") as scratch:
        orthanc = LocalOrthanc(Path(scratch) / "orthanc")
        orthanc.start()
        try:
            print(
                f"{'instances':>9} {'method':>16} {'seconds':>8} {'MB':>7} {'MB/s':>7} {'peak MB':>8}"
            )
            for count in args.sizes:
                paths = build_series(count, Path(scratch) / f"series{count}", shared)
                for path in paths:
                    stored = requests.post(
                        f"{orthanc.url}/instances", data=path.read_bytes(), auth=orthanc.auth
                    )
                    stored.raise_for_status()
                import pydicom

                first = pydicom.dcmread(paths[0], stop_before_pixels=True)
                study, series = first.StudyInstanceUID, first.SeriesInstanceUID
                rates: dict[str, float] = {}
                for method in methods:
                    runs = [run_method(method, orthanc, study, series) for _ in range(args.repeat)]
                    best = min(runs, key=lambda r: r["seconds"])
                    rate = best["bytes"] / 1e6 / best["seconds"]
                    rates[method] = rate
                    print(
                        f"{count:9d} {method:>16} {best['seconds']:8.2f} {best['bytes'] / 1e6:7.1f} "
                        f"{rate:7.1f} {max(r['peak_mb'] for r in runs):8.1f} {best['cpu_s']:6.2f}"
                    )
                print(
                    f"{count:9d} ratios: ours / dicomweb-client = "
                    f"{rates['ours'] / rates['dicomweb-client']:.2f} (target >= 2), "
                    f"ours / curl = {rates['ours'] / rates['curl']:.2f} (target >= 0.8), "
                    f"ours-no-fsync / curl = {rates['ours-no-fsync'] / rates['curl']:.2f}"
                )
        finally:
            orthanc.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == WORKER_FLAG:
        worker(*sys.argv[2:7])
    else:
        main()
