"""wavetyp: make typicality audible with a compact WaveNet over 8-bit mu-law speech."""
__version__ = "0.1.0"
