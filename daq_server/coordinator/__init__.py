"""Scale-out: a coordinator serving the ordinary REST API for several receiver hosts (docs/scaleout.rst)."""
