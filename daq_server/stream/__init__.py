"""Images out to online analysis while they are written: the Stream2 image stream and the preview stream."""
