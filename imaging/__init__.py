"""Reading uploaded medical images (raster and DICOM) and the preprocessing models see.

This package is the one place that turns uploaded bytes into pixels. It knows
nothing of models and imports no other project package. Choices made:

- The format comes from the content (magic bytes, Pillow, "DICM" at offset 128);
  a bare DICOM data set is tried last. PDF, SVG, NIfTI, archives and HEIC are refused.
- 16-bit, 32-bit and float grey rasters are scaled from their 0.5th..99.5th
  percentiles to 0..255; transparent images are composited on black.
- DICOM: modality LUT/rescale, then the user's window, the file's first window,
  its VOI LUT, or the frame's min..max; MONOCHROME1 is inverted afterwards so bone
  is white. Multi-frame files show the middle frame unless ``frame`` is given.
- Sizes are checked before decoding; Pillow's own bomb guard (about 89 Mpx) also applies.
- Degenerate images are refused: a side under 16 px (``too_small``) or sides more than
  20 times apart (``bad_shape``).
- Library warnings and the pydicom and Pillow loggers are silenced while any load runs, because
  their texts may quote header values; loads themselves run in parallel (``imaging.quiet``).
- Every preprocessing is a crop box and a resize, so a map on the model's view goes back onto
  the uploaded image (``preprocess_with_geometry``, :class:`ViewGeometry`).
- Nothing is written to disk; ``meta`` carries no patient data.
"""

from .datatypes import Limits, LoadedImage, Window
from .errors import ERROR_KINDS, ImageInputError
from .geometry import ViewGeometry, display_shape
from .loader import load_image, load_path
from .modality import MODALITIES, suggest_modality
from .preprocess import (
    PREPROCESSING,
    PREPROCESSORS,
    WHOLE_IMAGE,
    crop_to_brain,
    preprocess,
    preprocess_with_geometry,
)

__all__ = [
    "ERROR_KINDS",
    "MODALITIES",
    "PREPROCESSING",
    "PREPROCESSORS",
    "WHOLE_IMAGE",
    "ImageInputError",
    "Limits",
    "LoadedImage",
    "ViewGeometry",
    "Window",
    "crop_to_brain",
    "display_shape",
    "load_image",
    "load_path",
    "preprocess",
    "preprocess_with_geometry",
    "suggest_modality",
]
