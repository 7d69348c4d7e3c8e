"""Medical-image I/O shared by the CLI and the viewer: DICOM series, NIfTI volumes, 2D images."""
