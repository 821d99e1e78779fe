"""mtcnn's trained PNet as a one-scale face detector: per 12 x 12 window (stride 2), a box and a face probability."""
import keras
import numpy as np
from mtcnn.network.pnet import PNet
from mtcnn.utils.tensorflow import load_weights

SIZE = 64


class WindowBoxes(keras.layers.Layer):
    """PNet's box regression (x1, y1, x2, y2 offsets in window sizes) on its 12 x 12 windows at
    stride 2, as mtcnn's generate_bounding_box decodes it, to yxyx boxes (B, windows, 4)."""

    def call(self, regression):
        rows, columns = regression.shape[1], regression.shape[2]
        y = np.repeat(np.arange(rows), columns).astype("float32") * 2
        x = np.tile(np.arange(columns), rows).astype("float32") * 2
        flat = keras.ops.reshape(regression, (-1, rows * columns, 4))
        top, left = y + 1 + flat[..., 1] * 11, x + 1 + flat[..., 0] * 11
        bottom, right = y + 12 + flat[..., 3] * 11, x + 12 + flat[..., 2] * 11
        return keras.ops.stack([top, left, bottom, right], axis=-1)


def build():
    pnet = PNet()
    pnet.build()
    pnet.set_weights(load_weights("pnet.lz4"))
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 128, offset=-127.5 / 128, name="normalize")(inputs)  # mtcnn's (x - 127.5) / 128
    for layer in (pnet.conv1, pnet.prelu1, pnet.maxpool1, pnet.conv2, pnet.prelu2, pnet.conv3, pnet.prelu3):
        x = layer(x)
    boxes = WindowBoxes(name="boxes")(pnet.conv4_1(x))
    face = keras.layers.Reshape((-1, 1), name="face")(pnet.conv4_2(x)[..., 1:])
    return keras.Model(inputs, [boxes, face], name="pnet_detector")
