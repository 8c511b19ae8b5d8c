"""Online non-emergency reports filed by the public, and the staff review queue (docs/public.md,
"Online reports")."""
