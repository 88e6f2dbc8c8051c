"""Kafka side of regen: settings, topics, codecs, the Faust app, the publisher."""
