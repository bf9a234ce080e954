"""The job the RQ workers run: resize an image (here: sleep as long as it would take)."""

import time


def resize(image_id: int, seconds: float = 2.0) -> str:
    time.sleep(seconds)
    return f"image {image_id} resized"
