"""The public face: the incident feed and crime-map data (GeoJSON, CSV, Atom), public
request-for-service data (Minnesota Statutes 13.82 subd. 3) and the public pages that show
them, in several languages (docs/public.md). Privacy first: nothing leaves unless its type is
enabled for publication, it is not sensitive, and the publication delay has passed."""
