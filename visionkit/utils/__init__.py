"""Small helpers: image grids and annotations for the PNG panels."""
