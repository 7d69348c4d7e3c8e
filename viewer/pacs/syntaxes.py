"""Which SOP classes and transfer syntaxes the PACS module negotiates: those the reader decodes (pydicom with the
pylibjpeg plugins): uncompressed little endian (explicit and implicit VR), deflate, JPEG baseline/extended/lossless,
JPEG-LS and JPEG 2000.

An acceptor picks one transfer syntax per presentation context, so the image storage classes we care about are
proposed once per transfer syntax (the sender then finds a context for whatever the file is stored in and needs no
transcoding); other storage classes get one context with the uncompressed syntaxes. Everything fits in the 128
presentation contexts an association may carry.
"""
from __future__ import annotations

from pydicom import uid as U
from pynetdicom import build_context, build_role
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import _STORAGE_CLASSES

UNCOMPRESSED = [U.ExplicitVRLittleEndian, U.ImplicitVRLittleEndian]
DECODED = [
    U.ExplicitVRLittleEndian,
    U.ImplicitVRLittleEndian,
    U.DeflatedExplicitVRLittleEndian,
    U.JPEGBaseline8Bit,
    U.JPEGExtended12Bit,
    U.JPEGLossless,
    U.JPEGLosslessSV1,
    U.JPEGLSLossless,
    U.JPEGLSNearLossless,
    U.JPEG2000Lossless,
    U.JPEG2000,
]

# Image storage classes of a brain MR workflow: one context per transfer syntax each.
IMAGE_CLASSES = [
    U.MRImageStorage,
    U.EnhancedMRImageStorage,
    U.CTImageStorage,
    U.EnhancedCTImageStorage,
    U.SecondaryCaptureImageStorage,
    U.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    U.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
]
# Further storage classes, uncompressed only (one context each).
OTHER_CLASSES = [
    U.EnhancedMRColorImageStorage,
    U.MRSpectroscopyStorage,
    U.PositronEmissionTomographyImageStorage,
    U.RawDataStorage,
    U.GrayscaleSoftcopyPresentationStateStorage,
    U.BasicTextSRStorage,
    U.EnhancedSRStorage,
    U.ComprehensiveSRStorage,
    U.SegmentationStorage,
    U.EncapsulatedPDFStorage,
    U.MultiFrameTrueColorSecondaryCaptureImageStorage,
    U.UltrasoundImageStorage,
    U.DigitalXRayImageStorageForPresentation,
]

STORAGE_CLASSES = frozenset(str(v) for v in _STORAGE_CLASSES.values())


def storage_contexts() -> list[PresentationContext]:
    """Contexts for receiving (C-GET role selection, C-MOVE storage SCP): 7 × 11 + 13 = 90."""
    contexts = [build_context(c, ts) for c in IMAGE_CLASSES for ts in DECODED]
    contexts += [build_context(c, UNCOMPRESSED) for c in OTHER_CLASSES]
    return contexts


def storage_roles() -> list:
    """SCP/SCU role selection items for C-GET: we act as storage SCP for each class we propose."""
    return [build_role(c, scp_role=True) for c in IMAGE_CLASSES + OTHER_CLASSES]


def scp_contexts() -> list[PresentationContext]:
    """What a C-MOVE storage SCP accepts: every proposed transfer syntax we decode, for every storage class we know
    of (one context may list them all: the acceptor picks the first proposed that it supports)."""
    return [build_context(c, DECODED) for c in IMAGE_CLASSES + OTHER_CLASSES]


def send_contexts(pairs: set[tuple[str, str]]) -> list[PresentationContext]:
    """One context per (SOP class, transfer syntax) found among the files to send, so each goes as it is stored."""
    return [build_context(sop, ts) for sop, ts in sorted(pairs)]
