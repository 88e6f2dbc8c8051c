# A regen worker image, for docker-compose.yml. Pillow, PyAV and pillow-heif
# ship manylinux wheels with their codecs, so no system libraries are needed.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY agents ./agents
COPY schemas ./schemas
COPY projections ./projections
COPY imaging ./imaging
COPY cli ./cli
RUN pip install --no-cache-dir .
ENV REGEN_STATE_DIR=/var/lib/regen REGEN_IMAGE_STORE=/var/lib/regen/images REGEN_WEB_HOST=0.0.0.0
ENTRYPOINT ["regen"]
CMD ["worker"]
