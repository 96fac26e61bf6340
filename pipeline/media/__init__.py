"""ffmpeg in and out: argument lists and its log (ffmpeg_cmd), metadata (probe), raw frames
through pipes (video_io), encoded JPEG/PNG frames (frame_reader, image_stream), and which files
to work on (discover). Imports only the root modules of vrestore.pipeline."""
