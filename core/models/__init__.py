"""Model definitions, one file per architecture, built only from pluggable layers plus embedding."""
