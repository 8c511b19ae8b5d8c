"""The dispatch console and the offline API docs, served by the app itself (docs/console.md).

Infrastructure only: static files (the console's own HTML, JS and CSS in ``static/``; Leaflet
and Swagger UI from the Python packages that ship them, ``cad.console.vendor``), the page
routes, and the base-map endpoint whose renderer ``cad.wiring`` hands in as a typed callable
(``ConsoleDeps``): this package imports no domain package.
"""
