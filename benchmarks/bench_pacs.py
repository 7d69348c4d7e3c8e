"""Retrieve the 680-image Philips DTI series from a local Orthanc by C-GET and by DICOMweb (WADO-RS); prints seconds
and images/s for each. Needs Orthanc (Debian packages orthanc, orthanc-dicomweb) and ../shared/data/dicom.

    python benchmarks/bench_pacs.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from viewer.pacs import Node, Query, service  # noqa: E402
from viewer.pacs.orthanc import LocalOrthanc  # noqa: E402

DTI = Path(__file__).resolve().parents[2] / "shared" / "data" / "dicom" / "philips_achieva_dti_ax"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DTI)
    args = parser.parse_args()
    files = sorted(p for p in args.data.iterdir() if p.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalOrthanc(Path(tmp) / "orthanc", modalities={"BRAINSR": ("127.0.0.1", 11112)}).start()
        try:
            server.upload(files)
            dimse = Node(host="127.0.0.1", port=server.dicom_port, aet=server.aet, timeout=30)
            web = Node(url=server.dicomweb_url, timeout=60)
            study = service.find(dimse, Query(), with_series=False).studies[0].study_uid
            for name, node in (("C-GET", dimse), ("DICOMweb WADO-RS", web)):
                times = []
                for _ in range(args.repeat):
                    out = Path(tmp) / "out"
                    t0 = time.perf_counter()
                    report = service.retrieve(node, study, out)
                    times.append(time.perf_counter() - t0)
                    assert report.done == len(files), report
                    shutil.rmtree(out)
                best = min(times)
                print(f"{name:18s} {len(files)} images  best {best:.2f} s  ({len(files) / best:.0f} images/s)  "
                      f"runs: {', '.join(f'{t:.2f}' for t in times)}")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
