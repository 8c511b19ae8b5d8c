"""The road graph's street names: intersections ("MARKET ST & 5TH ST") at the node both streets
share, a street's middle, cross streets. House numbers are the address geocoder's
(incidents.geocoding): the graph carries no number ranges."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from incidents.geocoding.normalize import base_name, normalize_street

_SPLIT = re.compile(r"\s*(?:&|/|\bAND\b|\bAT\b|@)\s*")


def _strip_suffix(norm: str) -> str:
    return base_name(norm)


@dataclass(frozen=True)
class GeocodeHit:
    lat: float
    lon: float
    label: str


class StreetIndex:
    """Street name -> edges and nodes of the graph."""

    def __init__(self, names: list[str], edge_name: np.ndarray, graph: Any) -> None:
        self.graph = graph
        self._nodes: dict[str, set[int]] = defaultdict(set)
        self._label: dict[str, str] = {}
        tails, heads = graph.edge_tail, graph.fwd_head
        edge_name = np.asarray(edge_name)
        named = np.flatnonzero(edge_name >= 0)
        order = named[np.argsort(edge_name[named], kind="stable")]
        ids = edge_name[order]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if ids.size else ids
        for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), ids.size]):
            edges = order[lo:hi]
            ends = set(tails[edges].tolist()) | set(heads[edges].tolist())
            # an entry may name coincident roads together: "Van Ness Ave;US Hwy 101"
            for name in names[int(ids[lo])].split(";"):
                norm = normalize_street(name)
                if not norm:
                    continue
                self._label.setdefault(norm, re.sub(r"\b0+(?=\d)", "", name.strip()))
                self._nodes[norm].update(ends)
        self._loose: dict[str, list[str]] = defaultdict(list)
        for norm in sorted(self._nodes):
            self._loose[_strip_suffix(norm)].append(norm)

    @classmethod
    def from_graph(cls, graph: Any) -> StreetIndex | None:
        """None when the graph carries no street names (DIMACS, files built before names)."""
        names = getattr(graph, "street_names", None)
        edge_name = getattr(graph, "edge_name", None)
        if not names or edge_name is None:
            return None
        return cls(list(names), np.asarray(edge_name), graph)

    # ---- for the address geocoder (incidents.geocoding) ---------------------------------
    def street_names(self) -> list[str]:
        return list(self._nodes)

    def label(self, norm: str) -> str:
        return self._label.get(norm, norm)

    def street_point(self, norm: str) -> tuple[float, float] | None:
        """The node of the street nearest its nodes' middle (a street-precision answer)."""
        self.prepare()
        return self._middles.get(norm)

    def corner(self, a: str, b: str) -> tuple[float, float] | None:
        common = self._nodes.get(a, set()) & self._nodes.get(b, set()) if a != b else set()
        if not common:
            return None
        node = min(common)
        return float(self.graph.node_lat[node]), float(self.graph.node_lon[node])

    def prepare(self) -> None:
        """Build the node -> streets table and each street's middle node now (a quarter second
        on SF), in the thread that builds the index, not on the first query that needs them."""
        self._node_streets()
        if getattr(self, "_middles", None) is None:
            middles: dict[str, tuple[float, float]] = {}
            for norm, nodes in self._nodes.items():
                arr = np.fromiter(nodes, np.int64)
                lat, lon = self.graph.node_lat[arr], self.graph.node_lon[arr]
                k = int(np.argmin((lat - np.median(lat)) ** 2 + (lon - np.median(lon)) ** 2))
                middles[norm] = (float(lat[k]), float(lon[k]))
            self._middles = middles

    def _node_streets(self) -> dict[int, list[str]]:
        cached: dict[int, list[str]] | None = getattr(self, "_by_node", None)
        if cached is None:
            cached = defaultdict(list)
            for norm, nodes in self._nodes.items():
                for nd in nodes:
                    cached[nd].append(norm)
            self._by_node = cached
        return cached

    def cross_streets(self, norm: str) -> list[str]:
        """Streets that meet ``norm`` somewhere, sorted."""
        by_node = self._node_streets()
        out: set[str] = set()
        for nd in self._nodes.get(norm, ()):
            out.update(by_node.get(nd, ()))
        out.discard(norm)
        return sorted(out)

    def corners_around(self, norm: str, lat: float, lon: float) -> list[str]:
        """The cross streets at the nearest corner of ``norm`` on either side of a point."""
        by_node = self._node_streets()
        corners = [nd for nd in self._nodes.get(norm, ()) if len(set(by_node[nd]) - {norm})]
        if not corners:
            return []
        arr = np.asarray(corners)
        kx = math.cos(math.radians(lat))
        dx = (self.graph.node_lon[arr] - lon) * kx
        dy = self.graph.node_lat[arr] - lat
        order = np.argsort(dx * dx + dy * dy)
        first = int(order[0])
        picked = [first]
        for k in order[1:].tolist():
            if dx[k] * dx[first] + dy[k] * dy[first] < 0:  # on the other side of the point
                picked.append(int(k))
                break
        out: list[str] = []
        for k in picked:
            others = sorted(set(by_node[int(arr[k])]) - {norm})
            if others and others[0] not in out:
                out.append(others[0])
        return out

    def nearest_street(self, lat: float, lon: float) -> str | None:
        by_node = self._node_streets()
        if not by_node:
            return None
        g = self.graph
        kx = math.cos(math.radians(lat))
        d = ((g.node_lon - lon) * kx) ** 2 + (g.node_lat - lat) ** 2
        # The 50 nearest nodes, nearest first: a partition, then a sort of those 50 only. A
        # full argsort of every node here cost 1.8 ms of the server's 7.6 ms per create +
        # recommend on SF (each pick's position is described in words; py-spy, session 5).
        k = min(50, d.size)
        near = np.argpartition(d, k - 1)[:k] if d.size > k else np.arange(d.size)
        for nd in near[np.argsort(d[near])].tolist():
            if by_node.get(int(nd)):
                return min(by_node[int(nd)])
        return None

    def _streets(self, text: str) -> list[str]:
        """Candidate streets for a name as typed: the exact normalized name, else every
        street with that name and some suffix ("5TH" -> "5TH AVE", "5TH ST")."""
        norm = normalize_street(text)
        if norm in self._nodes:
            return [norm]
        return list(self._loose.get(_strip_suffix(norm), []))

    def _street(self, text: str) -> str | None:
        cands = self._streets(text)
        return cands[0] if len(cands) == 1 else None

    def intersection(self, text: str) -> GeocodeHit | None:
        parts = [p for p in _SPLIT.split(text.upper()) if p.strip()]
        if len(parts) != 2:
            return None
        # An ambiguous part ("5TH") is settled by the other street: the pair must meet.
        found: list[tuple[str, str, set[int]]] = []
        for a in self._streets(parts[0]):
            for b in self._streets(parts[1]):
                common = self._nodes[a] & self._nodes[b] if a != b else set()
                if common:
                    found.append((a, b, common))
        if len(found) != 1:
            return None  # no such corner, or several different corners match
        a, b, common = found[0]
        node = min(common)
        g = self.graph
        return GeocodeHit(float(g.node_lat[node]), float(g.node_lon[node]),
                          f"{self._label.get(a, a)} & {self._label.get(b, b)}")
