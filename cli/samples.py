"""Sample media for the demo, made on the spot: a user's clone has no corpus.

Photos are stored rotated or mirrored with the EXIF orientation that undoes
it, so every thumbnail should come out upright and identical; a short video
exercises the PyAV path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from regen.imaging.thumbnails import ORIENTATION_TAG

# orientation -> how to store an upright picture so that orientation restores it
STORE_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def upright_scene(width: int = 1600, height: int = 1067, seed: int = 7) -> Image.Image:
    """A landscape picture with an unmistakable top-left corner."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    sky = np.stack([40 + 120 * y / height, 90 + 100 * y / height, 200 - 80 * y / height], axis=-1)
    noise = rng.normal(0, 6, (height, width, 1))
    im = Image.fromarray(np.clip(sky + noise, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, int(height * 0.7), width, height], fill=(60, 120, 50))
    draw.ellipse([int(width * 0.75), 60, int(width * 0.9), 60 + int(width * 0.15)], fill=(250, 220, 90))
    draw.rectangle([30, 30, 330, 180], fill=(200, 30, 30))  # the red block marks top-left
    draw.text((50, 80), "regen", fill=(255, 255, 255), font_size=72)
    return im


def write_photos(folder: Path, orientations=(1, 3, 6, 8, 2, 5)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    scene = upright_scene()
    paths = []
    for o in orientations:
        transpose = STORE_FOR_ORIENTATION[o]
        stored = scene.transpose(transpose) if transpose is not None else scene
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = o
        exif.get_ifd(0x8769)[0x9003] = "2026:11:21 10:00:00"
        path = folder / f"photo_orientation_{o}.jpg"
        stored.save(path, "JPEG", quality=88, exif=exif.tobytes())
        paths.append(path)
    return paths


def write_video(path: Path, frames: int = 48, size: tuple[int, int] = (640, 360), fps: int = 24) -> Path:
    """A short MPEG-4 clip: a caption that stays put over a moving background."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 1_500_000
        for i in range(frames):
            im = Image.new("RGB", size, (20, 20, 40))
            draw = ImageDraw.Draw(im)
            x = (i * 13) % width
            draw.ellipse([x - 60, 100, x + 60, 220], fill=(230, 120, 30))
            draw.rectangle([0, height - 70, width, height], fill=(0, 0, 0))
            draw.text((20, height - 60), "static caption", fill=(255, 255, 255), font_size=36)
            frame = av.VideoFrame.from_image(im)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_samples(folder: Path) -> list[Path]:
    return [*write_photos(folder / "photos"), write_video(folder / "videos" / "clip.mp4")]
