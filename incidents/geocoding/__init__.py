"""Address geocoding: one normaliser for address files, the road graph and what dispatchers
type; an in-memory index of address points, places and the graph's streets; the address and
place tables. Used by intake (``incidents.service``) and the geocode endpoints."""
