"""Pure image work: thumbnails, composites, limits, the image store. No Kafka here."""
