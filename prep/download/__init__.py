"""HDTF acquisition: release annotation tables -> yt-dlp downloads -> cut, cropped 512x512 clips."""
