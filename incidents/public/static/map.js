// Progressive enhancement of the crime-map page: the table already lists every incident; this
// shows a Leaflet map of the same GeoJSON when scripts and Leaflet are available (the map's
// box stays hidden otherwise). Circle markers: no marker images to download.
(function () {
  "use strict";
  var el = document.getElementById("map");
  if (!el || typeof L === "undefined") { return; }
  fetch(el.getAttribute("data-geojson")).then(function (r) {
    if (!r.ok) { throw new Error("feed " + r.status); }
    return r.json();
  }).then(function (fc) {
    el.hidden = false;
    var map = L.map(el);
    var layer = L.geoJSON(fc, {
      pointToLayer: function (f, latlng) {
        return L.circleMarker(latlng, {radius: 7, color: "#0645ad", weight: 2, fillOpacity: 0.5});
      },
      onEachFeature: function (f, l) {
        var p = f.properties, div = document.createElement("div");
        div.textContent = p.number + " · " + p.description + (p.location ? " · " + p.location : "");
        l.bindPopup(div);
      }
    }).addTo(map);
    if (fc.features.length) { map.fitBounds(layer.getBounds(), {maxZoom: 17, padding: [20, 20]}); }
    else { map.setView([0, 0], 1); }
    el.setAttribute("data-ready", String(fc.features.length));
  }).catch(function () { el.hidden = true; });
})();
