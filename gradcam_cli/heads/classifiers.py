"""Heads of a (batch, units) output: softmax, binary, multi-label and regression."""

from __future__ import annotations

from .base import Head, TwoClasses, _is_linear


class ClassifierHead(Head):
    """A head whose reported values are class probabilities."""

    reports_probability = True
    sorted_by = "probability"


class SoftmaxHead(ClassifierHead):
    """Softmax over the classes, or several linear units read as a classifier's logits."""

    kind = "softmax"

    @classmethod
    def recognises(cls, rank, units, squash, activation):
        logits = squash == "none" and units != 1 and _is_linear(activation)
        return rank == 2 and (squash == "softmax" or logits)

    @classmethod
    def squash_of(cls, detected):
        return "softmax"

    def describe(self):
        return f"softmax over {self.units} classes"

    def reported(self, raw, regions=None):
        from keras import ops

        return ops.softmax(ops.cast(raw, "float32"), axis=-1)


class BinaryHead(TwoClasses, ClassifierHead):
    """One sigmoid unit ``z``: two classes, the negative one scored ``-z``."""

    kind = "binary"

    @classmethod
    def recognises(cls, rank, units, squash, activation):
        return rank == 2 and squash == "sigmoid" and units == 1

    def describe(self):
        return "one sigmoid unit (binary: negative/positive)"

    def scores(self, raw, regions=None):
        return self.both(raw)

    def reported(self, raw, regions=None):
        from keras import ops

        return ops.sigmoid(self.both(raw))


class MultiLabelHead(ClassifierHead):
    """Several sigmoid units, each its own probability."""

    kind = "multilabel"

    @classmethod
    def recognises(cls, rank, units, squash, activation):
        return rank == 2 and squash == "sigmoid" and units != 1

    def describe(self):
        return f"{self.units} sigmoid units (multi-label)"

    def reported(self, raw, regions=None):
        from keras import ops

        return ops.sigmoid(ops.cast(raw, "float32"))


class RegressionHead(Head):
    """One linear unit, or units with an activation other than softmax/sigmoid (ReLU, ...)."""

    kind = "regression"
    sorted_by = "predicted value"

    @classmethod
    def recognises(cls, rank, units, squash, activation):
        return rank == 2 and squash == "none" and (units == 1 or not _is_linear(activation))

    def default_label(self, index):
        return "value" if self.units == 1 else f"unit_{index}"

    def describe(self):
        return f"{self.units} linear unit{'s' if self.units > 1 else ''} (regression)"

    def reported(self, raw, regions=None):
        """The output value: the layer's own activation applied again (e.g. a ReLU count)."""
        from keras import ops

        raw = ops.cast(raw, "float32")
        if self.source == "activation" and self.layer is not None:
            return ops.cast(self.layer.activation(raw), "float32")
        return raw

    def row_fields(self, reported):
        return {"value": reported}

    @classmethod
    def format_prediction(cls, label, value):
        return f"{label} = {value:.4g}"
