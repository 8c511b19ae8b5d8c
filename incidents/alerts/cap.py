"""CAP 1.2 and feed documents, and the alert area: pure functions, no I/O.

Element order follows the CAP 1.2 schema (a sequence: order matters); times are written
with a numeric offset, UTC as ``-00:00`` as the standard asks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
_EARTH_R_M = 6_371_008.8
# Vertices of the circle polygon: 32 keep the chord error under 0.5 % of the radius and
# the XML small; receivers that only read polygons (many do) still get the circle's shape.
CIRCLE_VERTICES = 32

Ring = list[tuple[float, float]]   # (lat, lon), closed


def cap_time(t: datetime) -> str:
    t = t.astimezone(UTC).replace(microsecond=0)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + "-00:00"


def circle_polygon(*, lat: float, lon: float, radius_m: float) -> list[Ring]:
    """The circle around a point as one closed ring, buffered in a local equirectangular
    plane (metres) with shapely and projected back: exact enough for alert radii of a few
    kilometres, wrong near the poles where no alert of this system goes."""
    k_lon = math.cos(math.radians(lat)) * _EARTH_R_M * math.pi / 180
    k_lat = _EARTH_R_M * math.pi / 180
    circle = Point(0.0, 0.0).buffer(radius_m, quad_segs=CIRCLE_VERTICES // 4)
    ring = [(lat + y / k_lat, lon + x / k_lon) for x, y in orient(circle).exterior.coords]
    return [ring]


def zone_polygons(geometry: dict[str, Any]) -> list[Ring]:
    """A zone's GeoJSON Polygon or MultiPolygon as CAP rings (outer rings only: CAP has no
    holes)."""
    geom: BaseGeometry = shape(geometry)
    polys = list(getattr(geom, "geoms", [geom]))
    return [[(y, x) for x, y in p.exterior.coords] for p in polys if not p.is_empty]


def _polygon_text(ring: Ring) -> str:
    return " ".join(f"{lat:.6f},{lon:.6f}" for lat, lon in ring)


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        el.text = text
    return el


def alert_xml(*, alert: dict[str, Any], sender: str, sent: datetime,
              reference: str | None) -> str:
    """The CAP 1.2 message of an alert row (``infos``: one block per language)."""
    ET.register_namespace("", CAP_NS)
    root = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(root, "identifier", alert["identifier"])
    _sub(root, "sender", sender)
    _sub(root, "sent", cap_time(sent))
    _sub(root, "status", "Actual")
    _sub(root, "msgType", alert["msg_type"])
    _sub(root, "scope", "Public")
    if reference is not None:
        _sub(root, "references", reference)
    _sub(root, "incidents", alert["incident_number"] or str(alert["incident_id"]))
    for info in alert["infos"]:
        el = _sub(root, "info")
        _sub(el, "language", info["language"])
        _sub(el, "category", alert["category"])
        _sub(el, "event", alert["event"])
        _sub(el, "urgency", alert["urgency"])
        _sub(el, "severity", alert["severity"])
        _sub(el, "certainty", alert["certainty"])
        if alert.get("expires_at") is not None:
            _sub(el, "expires", cap_time(alert["expires_at"]))
        _sub(el, "senderName", alert["agency"])
        _sub(el, "headline", info["headline"])
        _sub(el, "description", info["description"])
        if info.get("instruction"):
            _sub(el, "instruction", info["instruction"])
        area = _sub(el, "area")
        _sub(area, "areaDesc", alert["area_desc"])
        for ring in alert["polygons"]:
            _sub(area, "polygon", _polygon_text([(p[0], p[1]) for p in ring]))
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def reference_of(*, sender: str, identifier: str, sent: datetime) -> str:
    """CAP ``references`` entry: sender,identifier,sent."""
    return f"{sender},{identifier},{cap_time(sent)}"


def atom_feed(*, alerts: Sequence[dict[str, Any]], feed_url: str, message_url: str,
              updated: datetime) -> str:
    """An Atom feed of published alerts: each entry links to its CAP message
    (``message_url`` with ``{identifier}`` in it)."""
    ET.register_namespace("", ATOM_NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    sub(feed, "id", feed_url)
    sub(feed, "title", "Community alerts")
    sub(feed, "updated", updated.astimezone(UTC).isoformat())
    sub(feed, "link", rel="self", href=feed_url)
    for a in alerts:
        entry = sub(feed, "entry")
        sub(entry, "id", f"urn:cap:{a['identifier']}")
        first = a["infos"][0]
        sub(entry, "title", f"{a['msg_type']}: {first['headline']}")
        sub(entry, "updated", a["sent_at"].astimezone(UTC).isoformat())
        author = sub(entry, "author")
        sub(author, "name", a["agency"])
        sub(entry, "link", rel="alternate", type="application/cap+xml",
            href=message_url.format(identifier=a["identifier"]))
        sub(entry, "summary", first["description"])
    return ET.tostring(feed, encoding="unicode", xml_declaration=True)
