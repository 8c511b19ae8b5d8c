"""Where the third-party browser libraries come from: Python packages that ship them, so
`pip install` (editable or the wheel) brings them and nothing is fetched at run time.

* Leaflet: ``XStatic-Leaflet`` (the XStatic packaging standard, maintained for OpenStack).
* Swagger UI: ``swagger-ui-bundle-v2`` (swagger-ui-dist 5.x, which renders OpenAPI 3.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import swagger_ui_bundle  # type: ignore[import-untyped]  # ships no type information
import xstatic.pkg.leaflet  # type: ignore[import-untyped]  # ships no type information


@dataclass(frozen=True)
class VendorDir:
    mount: str      # URL prefix
    path: Path      # folder served under it
    version: str


def vendor_dirs() -> list[VendorDir]:
    swagger = Path(swagger_ui_bundle.swagger_ui_path)
    return [
        VendorDir("/console/vendor/leaflet", Path(xstatic.pkg.leaflet.BASE_DIR),
                  str(xstatic.pkg.leaflet.VERSION)),
        VendorDir("/console/vendor/swagger-ui", swagger, swagger.name.removeprefix("swagger-ui-")),
    ]
