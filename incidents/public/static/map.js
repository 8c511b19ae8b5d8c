// Progressive enhancement of the crime-map page: the server-rendered table lists every
// incident of the page with its published point (data-lat, data-lon); this draws the same
// rows on a Leaflet map when scripts and Leaflet are available. The map's box stays hidden
// otherwise. Circle markers: no marker images to download.
(function () {
  "use strict";
  var el = document.getElementById("map");
  if (!el || typeof L === "undefined") { return; }
  var rows = document.querySelectorAll("#incidents tbody tr[data-lat]");
  el.hidden = false;
  var map = L.map(el);
  var points = [];
  rows.forEach(function (tr) {
    var ll = [parseFloat(tr.getAttribute("data-lat")), parseFloat(tr.getAttribute("data-lon"))];
    var cells = tr.querySelectorAll("td"), div = document.createElement("div");
    div.textContent = cells[0].textContent + " · " + cells[1].textContent +
      (cells[3].textContent ? " · " + cells[3].textContent : "");
    L.circleMarker(ll, {radius: 7, color: "#0645ad", weight: 2, fillOpacity: 0.5})
      .bindPopup(div).addTo(map);
    points.push(ll);
  });
  if (points.length) { map.fitBounds(points, {maxZoom: 17, padding: [20, 20]}); }
  else { map.setView([0, 0], 1); }
  el.setAttribute("data-ready", String(points.length));
})();
