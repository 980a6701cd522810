"""HTTP routes: the hot prediction routes and the operational ones."""
