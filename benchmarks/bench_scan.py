"""Scan speed of ``srgan.io.dicom_series.scan`` on a synthetic 500-file series.

Writes N classic MR files (256×256 int16, written from one template dataset) into a temporary folder,
then times the header scan and the first ``Series.pixels`` call (which reads and decodes one file).
Prints a markdown table. No assertions: speed is reported, not tested.

    python benchmarks/bench_scan.py [--files 500] [--size 256] [--repeats 3]
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from srgan.io.dicom_series import scan


def template(size: int) -> pydicom.Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.Modality = "MR"
    ds.PatientName, ds.PatientID = "Bench^Scan", "BENCH"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.SeriesNumber, ds.SeriesDescription = 1, "synthetic axial"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.Rows = ds.Columns = size
    ds.PixelSpacing = [0.9, 0.9]
    ds.SliceThickness = 1.0
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.WindowCenter, ds.WindowWidth = 500, 1000
    ds.PixelData = np.random.default_rng(0).integers(0, 1000, (size, size), dtype=np.int16).tobytes()
    return ds


def write_series(folder: Path, n_files: int, size: int) -> None:
    ds = template(size)
    for i in range(n_files):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [-115.0, -115.0, float(i)]
        ds.save_as(folder / f"IM{i:05d}.dcm", enforce_file_format=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_scan_") as tmp:
        folder = Path(tmp)
        write_series(folder, args.files, args.size)
        scan_times, pixel_times = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = scan(folder)
            scan_times.append(time.perf_counter() - t0)
            series = result.series[0]
            t0 = time.perf_counter()
            series.pixels(0, series.shape[1] // 2)
            pixel_times.append(time.perf_counter() - t0)
    print(f"`{' '.join([Path(sys.executable).name, *sys.argv])}` — {platform.processor() or platform.machine()}, "
          f"pydicom {pydicom.__version__}, shape {series.shape}\n")
    print("| measure | median | min | per file |")
    print("|---|---|---|---|")
    s = np.array(scan_times)
    print(f"| scan {args.files} files ({args.size}×{args.size} int16) | {np.median(s) * 1e3:.0f} ms "
          f"| {s.min() * 1e3:.0f} ms | {np.median(s) / args.files * 1e3:.2f} ms |")
    p = np.array(pixel_times)
    print(f"| first slice pixels | {np.median(p) * 1e3:.1f} ms | {p.min() * 1e3:.1f} ms | – |")


if __name__ == "__main__":
    main()
