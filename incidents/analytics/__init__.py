"""Response-time analytics over live and imported history: intervals, grouped reports,
charts, analyst search and export, and the historical import (docs/analytics.md)."""
