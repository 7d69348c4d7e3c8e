"""Build the bundled sample MR series from the MNI ICBM152 2009a T1 template shipped inside nilearn.

Why a template and not a patient: it can be redistributed (MNI notice in README.md), it holds no personal
data, and it is a real-looking adult brain with ventricles for demos and tests of the whole pipeline.

Geometry (LPS mm, classic DICOM axial, rows run anterior→posterior, columns right→left):
- LR grid: 96 columns × 112 rows at 2 mm in-plane, 28 contiguous axial slices, 4 mm thick, z = −36 … +72 mm.
- The high-resolution truth is the same slices at 1 mm in-plane (192 × 224); each LR pixel is the mean of a
  2 × 2 block of truth pixels, so LR pixel i is centred on truth position 2i + 0.5 (the project's convention).
  Each 4 mm slice averages four 1 mm template planes (slice profile).
- Stored as uint16 with 12 bits (template 0..255 × 12) plus Rician-like noise (σ = 12) from a fixed seed.

Everything is deterministic (fixed UID roots, seed, dates), so a rerun writes byte-identical files.
Nothing is downloaded; the template comes from the installed nilearn wheel.

    python resources/sample/make_sample.py                 # rewrite resources/sample/series/
    python resources/sample/make_sample.py --out DIR       # elsewhere
    python resources/sample/make_sample.py --truth t.nii.gz  # also save the 1 mm in-plane truth (LPS affine)
"""
from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import numpy as np

SCALE = 2
COLS, ROWS, SLICES = 96, 112, 28
PIXEL_MM, SLICE_MM = 2.0, 4.0
FIRST_CENTRE_LPS = (-95.0, -93.0, -36.0)   # centre of LR pixel (row 0, col 0) of slice 0, LPS mm
NOISE_SIGMA, GAIN, SEED = 12.0, 12.0, 20090
UID_SEED = "BrainSR sample series v1 (MNI ICBM152 2009a)"
TEMPLATE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
HERE = Path(__file__).resolve().parent


def template_path() -> Path:
    import nilearn

    path = Path(nilearn.__file__).parent / "datasets" / "data" / TEMPLATE
    if not path.is_file():
        raise SystemExit(f"{path}: the MNI152 2009a template is not in this nilearn installation")
    return path


def truth_volume() -> tuple[np.ndarray, np.ndarray]:
    """Truth (SLICES, ROWS·2, COLS·2) float32 at 1 mm in-plane and its affine (4, 4) voxel (col, row, slice) → LPS."""
    import nibabel as nib
    from scipy.ndimage import map_coordinates

    img = nib.load(template_path())
    data = np.asarray(img.dataobj, dtype=np.float32)
    ras_to_vox = np.linalg.inv(img.affine)
    x0, y0, z0 = FIRST_CENTRE_LPS
    step = PIXEL_MM / SCALE
    cols = x0 - (SCALE - 1) / 2 * step + step * np.arange(COLS * SCALE)      # LPS x of truth columns
    rows = y0 - (SCALE - 1) / 2 * step + step * np.arange(ROWS * SCALE)      # LPS y of truth rows
    out = np.zeros((SLICES, rows.size, cols.size), np.float32)
    for k in range(SLICES):
        zc = z0 + SLICE_MM * k
        planes = []
        for dz in (-1.5, -0.5, 0.5, 1.5):                                   # 4 mm slab, 1 mm template planes
            yy, xx = np.meshgrid(rows, cols, indexing="ij")
            lps = np.stack([xx, yy, np.full_like(xx, zc + dz), np.ones_like(xx)])
            ras = lps * np.array([-1, -1, 1, 1])[:, None, None]
            vox = np.tensordot(ras_to_vox, ras, axes=1)[:3]
            planes.append(map_coordinates(data, vox, order=1, mode="constant", cval=0.0))
        out[k] = np.mean(planes, axis=0)
    affine = np.eye(4)
    affine[:3, :3] = np.diag([step, step, SLICE_MM])
    affine[:3, 3] = [cols[0], rows[0], z0]
    return out, affine


def low_resolution(truth: np.ndarray) -> np.ndarray:
    """uint16 (SLICES, ROWS, COLS): 2×2 block mean of the truth, gain, Rician-like noise, 12-bit range."""
    n, h, w = truth.shape
    lr = truth.reshape(n, h // SCALE, SCALE, w // SCALE, SCALE).mean(axis=(2, 4)) * GAIN
    rng = np.random.default_rng(SEED)
    noisy = np.hypot(lr + rng.normal(0, NOISE_SIGMA, lr.shape), rng.normal(0, NOISE_SIGMA, lr.shape))
    return np.clip(np.rint(noisy), 0, 4095).astype(np.uint16)


def _uid(*parts: str) -> str:
    """Deterministic UUID-derived UID (2.25 form, ISO/IEC 9834-8) from the fixed seed and the object's name."""
    return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join([UID_SEED, *parts])).int)


def write_series(pixels: np.ndarray, out: Path) -> list[Path]:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage
    from pydicom.valuerep import format_number_as_ds

    out.mkdir(parents=True, exist_ok=True)
    study, series, frame_of_ref = _uid("study"), _uid("series"), _uid("frame of reference")
    brain = pixels[pixels > 4 * NOISE_SIGMA]
    lo, hi = np.percentile(brain, [1, 99.5])
    paths = []
    for k in range(pixels.shape[0]):
        sop = _uid("image", str(k))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = _uid("implementation")
        meta.ImplementationVersionName = "BRAINSR_SAMPLE"
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, sop
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20090101"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.AccessionNumber = ""
        ds.Modality = "MR"
        ds.Manufacturer = "BrainSR sample generator"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "Sample derived from the MNI ICBM152 2009a template"
        ds.SeriesDescription = "T1 axial 2mm 4mm slices, MNI152 2009a template"
        ds.DerivationDescription = ("Resampled from the MNI ICBM152 2009a nonlinear symmetric T1 template "
                                    "(nilearn copy): 2x2 mm in-plane block mean, 4 mm slab mean, synthetic "
                                    f"Rician noise sigma {NOISE_SIGMA:g}. Not a patient.")
        ds.PatientName = "BrainSR^Sample"
        ds.PatientID = "BRAINSR-SAMPLE"
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.BodyPartExamined = "BRAIN"
        ds.ScanningSequence = "GR"
        ds.SequenceVariant = "SP"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = ""
        ds.EchoTime = ""
        ds.EchoTrainLength = ""
        ds.SliceThickness = format_number_as_ds(SLICE_MM)
        ds.SpacingBetweenSlices = format_number_as_ds(SLICE_MM)
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        x0, y0, z0 = FIRST_CENTRE_LPS
        z = z0 + SLICE_MM * k
        ds.ImagePositionPatient = [format_number_as_ds(v) for v in (x0, y0, z)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = frame_of_ref
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = format_number_as_ds(z)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = pixels.shape[1:]
        ds.PixelSpacing = [format_number_as_ds(PIXEL_MM)] * 2
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter = format_number_as_ds(float(np.round((lo + hi) / 2)))
        ds.WindowWidth = format_number_as_ds(float(np.round(hi - lo)))
        ds.PixelData = pixels[k].astype("<u2").tobytes()
        ds["PixelData"].VR = "OW"
        path = out / f"IM{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "series", help="folder for the DICOM files")
    ap.add_argument("--truth", type=Path, help="also write the 1 mm in-plane truth as NIfTI (LPS→RAS affine)")
    args = ap.parse_args(argv)
    truth, affine = truth_volume()
    paths = write_series(low_resolution(truth), args.out)
    if args.truth:
        import nibabel as nib

        vol = np.transpose(truth * GAIN, (2, 1, 0))                # (x=col, y=row, z=slice)
        nib.save(nib.Nifti1Image(vol.astype(np.float32), np.diag([-1, -1, 1, 1]) @ affine), args.truth)
    print(f"wrote {len(paths)} files to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
