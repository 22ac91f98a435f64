"""HLS firmware of the trained models: hls4ml conversion, C simulation, synthesis and estimates."""
