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
COPY kinds ./kinds
COPY regen ./regen
RUN pip install --no-cache-dir .
# The worker decodes untrusted images: it runs as a user of its own that can
# write only its state and image store, not the code it runs. A numeric id,
# so runtimes that enforce "not root" (runAsNonRoot) can check it.
RUN groupadd --system --gid 10001 regen \
 && useradd --system --uid 10001 --gid regen --home-dir /var/lib/regen --no-create-home --shell /usr/sbin/nologin regen \
 && mkdir -p /var/lib/regen/images \
 && chown -R regen:regen /var/lib/regen
ENV HOME=/var/lib/regen REGEN_STATE_DIR=/var/lib/regen REGEN_IMAGE_STORE=/var/lib/regen/images REGEN_WEB_HOST=0.0.0.0
USER 10001:10001
ENTRYPOINT ["regen"]
CMD ["worker"]
