"""Third-party sources as a package would ship them (for the entry-point tests)."""
