// Progressive enhancement of the crime-map page: the table already lists every incident; this
// adds a Leaflet map of the same GeoJSON when scripts and Leaflet are available.
(function () {
  "use strict";
  var el = document.getElementById("map");
  if (!el || typeof L === "undefined") { if (el) { el.hidden = true; } return; }
  var map = L.map(el);
  fetch(el.getAttribute("data-geojson")).then(function (r) { return r.json(); }).then(function (fc) {
    var layer = L.geoJSON(fc, {
      onEachFeature: function (f, l) {
        var p = f.properties, div = document.createElement("div");
        div.textContent = p.number + " · " + p.description + (p.location ? " · " + p.location : "");
        l.bindPopup(div);
      }
    }).addTo(map);
    if (fc.features.length) { map.fitBounds(layer.getBounds(), {maxZoom: 16}); }
    else { map.setView([0, 0], 1); }
  }).catch(function () { el.hidden = true; });
})();
