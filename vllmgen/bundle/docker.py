"""A node's (or this machine's) Docker engine as bundling and loading use it: apply's executor for
inspect and build, ``runner.sdk.ImageStreams`` for save, load, tag and pull."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from vllmgen.bundle.contents import ImageNeed
from vllmgen.targets.docker.sdk import BUILD_TIMEOUT, DockerSdkExecutor, ImageStreams, SaveStream


class DockerEngine:
    def __init__(self, node: str, endpoint: str | None):
        # one long timeout: a `docker load` of many GB answers only once the whole archive is in
        self.executor = DockerSdkExecutor(node, endpoint, timeout=BUILD_TIMEOUT)
        self.streams = ImageStreams(self.executor)
        self.host = self.executor.host

    def ping(self) -> None:
        self.executor.ping()

    def image_id(self, reference: str) -> str | None:
        return self.executor.image_id(reference)

    def image_labels(self, reference: str) -> dict[str, str] | None:
        return self.executor.image_labels(reference)

    def size(self, reference: str) -> int | None:
        return self.streams.size(reference)

    def build(self, need: ImageNeed, on_line: Callable[[str], None]) -> None:
        assert need.context is not None and need.dockerfile is not None
        self.executor.build_image(need.context, need.reference, need.dockerfile, need.labels, on_line)

    def pull(self, reference: str) -> None:
        self.streams.pull(reference)

    def save(self, image_id: str) -> SaveStream:
        return self.streams.save(image_id)

    def load(self, chunks: Iterable[bytes]) -> str:
        return self.streams.load(chunks)

    def tag(self, image_id: str, reference: str) -> None:
        self.streams.tag(image_id, reference)

    def close(self) -> None:
        self.executor.close()
