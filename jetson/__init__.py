"""edgevos.jetson: what runs only on a Jetson (GStreamer pipeline presets; scripts live beside it)."""
