"""Turn an ffmpeg-python graph into an argument list (never a shell string)."""


def ffmpeg_command(output_stream, *global_opts: str, loglevel: str = "error", ffmpeg_bin: str = "ffmpeg") -> list:
    # ffmpeg-python appends global args after the output file, where ffmpeg ignores
    # per-file options as "trailing"; put them right after the binary instead.
    args = output_stream.compile(cmd=ffmpeg_bin)
    return [args[0], "-nostdin", "-hide_banner", "-loglevel", loglevel, *global_opts, *args[1:]]
