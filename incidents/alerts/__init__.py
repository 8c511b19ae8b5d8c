"""Community alerts as OASIS CAP 1.2: draft, two-person approval, publication and delivery."""
