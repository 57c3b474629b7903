"""The app's image modalities and the mapping from DICOM Modality codes."""

from __future__ import annotations

__all__ = ["MODALITIES", "suggest_modality"]

MODALITIES: tuple[str, ...] = ("endoscopy", "mri", "xray", "histology")

# DICOM (0008,0060) Modality code -> app modality. MG (mammography) is an X-ray
# technique but is deliberately not mapped: the app's X-ray models are chest models.
_DICOM_TO_APP: dict[str, str] = {
    "MR": "mri",
    "CR": "xray",
    "DX": "xray",
    "DR": "xray",
    "RG": "xray",
    "ES": "endoscopy",
    "SM": "histology",
    "GM": "histology",
}


def suggest_modality(dicom_modality: str | None) -> str | None:
    """Return the app modality for a DICOM Modality code, or None if there is none."""
    if not dicom_modality:
        return None
    return _DICOM_TO_APP.get(dicom_modality.strip().upper())
