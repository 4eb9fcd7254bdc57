"""The spec's scalar formats: names, addresses, paths, images, sizes, ports, and the model base class.

Shared by every spec module (``vllmgen.spec.model``, ``vllmgen.spec.parallel``): one definition of what a
node name or a host path may be. Every pattern is applied with ``fullmatch``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from vllmgen.spec import addresses


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _fail(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


# --- scalar formats -------------------------------------------------------------------------

# every pattern is applied with fullmatch: with match, '$' also matches before a final newline
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Docker's reference grammar (distribution/reference): [domain[:port]/]path[:tag][@digest]; path
# components lower-case, joined by '.', '_', '__' or dashes; a domain only as the first component
_DOMAIN = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(?:\.(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REF = re.compile(
    rf"^(?P<repo>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_PINNED_REQ = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9_,.-]+\])?==[A-Za-z0-9.+!_-]+$")
_GIT_REQ = re.compile(r"^(?:[A-Za-z0-9._-]+ @ )?git\+(https|ssh)://[^\s@]+(?:@[^\s#]+)?(?:#[^\s]*)?$")
_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?[bkmgBKMG]?$")
# Token shapes, each as its issuer writes it (prefix, charset, length), so ordinary words do not match:
# what each one is, and what to write instead (a reference where the spec has one).
_HF_ADVICE = "secrets are given by reference only (secrets.hf_token: {env: HF_TOKEN} or {file: /path/to/token})"
_KEY_ADVICE = "an API key is given by reference only (secrets.api_key: {env: VAR_NAME} or {file: /path/to/key})"
_OTHER_ADVICE = ("a credential written here ends up in build/, on a command line or in an image layer; "
                 "remove it from the spec (vllmgen reads only secrets.hf_token and secrets.api_key, by reference)")
TOKEN_SHAPES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (kind, re.compile(r"(?<![A-Za-z0-9])" + pattern), advice) for kind, pattern, advice in (
        ("Hugging Face token", r"hf_[A-Za-z0-9]{30,}", _HF_ADVICE),
        ("API key", r"sk-[A-Za-z0-9_-]{20,}", _KEY_ADVICE),
        ("GitHub token", r"gh[pousr]_[A-Za-z0-9]{36,}", _OTHER_ADVICE),
        ("GitHub token", r"github_pat_[A-Za-z0-9_]{40,}", _OTHER_ADVICE),
        ("GitLab token", r"glpat-[A-Za-z0-9_-]{20,}", _OTHER_ADVICE),
        ("npm token", r"npm_[A-Za-z0-9]{36,}", _OTHER_ADVICE),
        ("PyPI token", r"pypi-AgE[A-Za-z0-9_-]{50,}", _OTHER_ADVICE),
        ("AWS access key", r"(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])", _OTHER_ADVICE),
        ("Google API key", r"AIza[0-9A-Za-z_-]{35}", _OTHER_ADVICE),
        ("Slack token", r"xox[abposr]-[0-9A-Za-z-]{10,}", _OTHER_ADVICE),
        ("private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----", _OTHER_ADVICE),
    ))
# the authority of a URL (scheme://[userinfo@]host...): userinfo ends at the last '@' before any '/?#'
_URL_AUTHORITY = re.compile(r"(?i)(?<![A-Za-z0-9+.-])[a-z][a-z0-9+.-]*://([^/?#\s]*)@")
_TOKEN_LIKE_USER = re.compile(r"[A-Za-z0-9_-]{20,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise _fail("name", "expected a DNS label: lower-case letters, digits and '-', 1-63 characters")
    return value


def _address(value: str) -> str:
    if addresses.parse_ip(value) is None and not addresses.is_hostname(value):
        raise _fail("address", "expected an IPv4/IPv6 address or a hostname")
    return value


def _ifname(value: str) -> str:
    if not addresses.is_ifname(value):
        raise _fail("ifname", "expected a network interface name (at most 15 characters: letters, digits, '_.:-')")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise _fail("env_name", "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
    return value


def _abs_path(value: str) -> str:
    if not value.startswith("/") and not value.startswith("~/") and value != "~":
        raise _fail("abs_path", "expected an absolute path (starting with '/' or '~/')")
    if "\x00" in value or "\n" in value:
        raise _fail("abs_path", "a path cannot hold NUL or newline characters")
    if ":" in value:  # docker's --volume and compose's short syntax split on it
        raise _fail("abs_path", "a host path cannot hold ':' (Docker's volume syntax splits on it)")
    if "${" in value:  # compose's volume syntax reads '${' as a variable even escaped, and loses the target
        raise _fail("abs_path", "a host path cannot hold '${' (compose's volume syntax takes it for a variable)")
    return value


def _container_path(value: str) -> str:
    if not value.startswith("/"):
        raise _fail("container_path", "expected an absolute path inside the container (starting with '/')")
    if ":" in value or "${" in value or "\n" in value or "\x00" in value:
        raise _fail("container_path", "a container path cannot hold ':', '${', NUL or newline")
    return value


def _text(value: str) -> str:
    """Free text that ends up in scripts: any printable text, never a literal token."""
    if _CONTROL.search(value) or "\n" in value:
        raise _fail("text", "expected one line of text without control characters")
    return value


def looks_like_secret(value: str) -> bool:
    """A token of a known shape (Hugging Face, OpenAI-style, GitHub, GitLab, ...) written out in full."""
    return token_kind(value) is not None


def token_kind(value: str) -> tuple[str, str] | None:
    """(what the token is, what to write instead) for the first known token shape in ``value``."""
    for kind, pattern, advice in TOKEN_SHAPES:
        if pattern.search(value):
            return kind, advice
    return None


def url_credentials(value: str) -> str | None:
    """What is wrong when a URL in ``value`` carries credentials (``user:password@``, or a token as the
    user), else None. A plain user name (``git+ssh://git@host``) is no secret."""
    for match in _URL_AUTHORITY.finditer(value):
        userinfo = match.group(1)
        if ":" in userinfo:
            return "a password in a URL ('user:password@')"
        if _TOKEN_LIKE_USER.fullmatch(userinfo) and any(c.isdigit() for c in userinfo):
            return "a token as a URL's user ('TOKEN@host')"
    return None


def _size(value: str | int) -> str:
    text = str(value)
    if not _SIZE.fullmatch(text):
        raise _fail("size", "expected a size such as '10g', '512m' or a byte count")
    return text


def _url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s'\"\\]+", value):
        raise _fail("url", "expected an http(s) URL without spaces or quotes")
    return value


def _pinned(value: str) -> str:
    if not _PINNED_REQ.fullmatch(value):
        raise _fail("pinned", "expected a pinned requirement 'name==version' (unpinned installs drift between builds)")
    return value


def _git(value: str) -> str:
    if not _GIT_REQ.fullmatch(value):
        raise _fail("git_req", "expected 'git+https://host/repo.git@ref' (optionally 'name @ git+...')")
    return value


def _image_ref(value: str) -> str:
    match = _IMAGE_REF.fullmatch(value) if len(value) <= 255 + 1 + 128 + 1 + 71 else None
    if match is None or len(match.group("repo")) > 255:  # Docker's limit on the name, tag and digest aside
        raise _fail("image_ref", "expected an image reference such as vllm/vllm-openai:v0.32.0 "
                    "([registry/]name[:tag][@sha256:digest], no spaces or options)")
    return value


def floating_image(value: str) -> bool:
    """An image reference whose content moves: tagged 'latest' or not tagged, and no digest."""
    match = _IMAGE_REF.fullmatch(value)
    return match is not None and match.group("digest") is None and match.group("tag") in (None, "latest")


def _version(value: str) -> str:
    if not re.fullmatch(r"[0-9]+(\.[0-9]+){1,2}", value):
        raise _fail("version", "expected a version such as 2.49.2")
    return value


def _docker_host(value: str) -> str:
    from vllmgen.spec.endpoints import FORMS, EndpointError, parse, refused

    try:
        parse(value)
    except EndpointError as exc:
        message = str(exc)
        raise _fail("docker_host", message if message.startswith("expected") else f"expected {FORMS}: {message}") from None
    why = refused(value)
    if why:
        raise _fail("docker_host", why)
    return value


def _fraction(value: float) -> float:
    if not 0 < value <= 1:
        raise _fail("fraction", "expected a fraction in (0, 1]")
    return value


Name = Annotated[str, AfterValidator(_name)]
Address = Annotated[str, AfterValidator(_address)]
IfName = Annotated[str, AfterValidator(_ifname)]
EnvName = Annotated[str, AfterValidator(_env_name)]
HostPath = Annotated[str, AfterValidator(_abs_path)]
ContainerPath = Annotated[str, AfterValidator(_container_path)]
Text = Annotated[str, AfterValidator(_text)]
DockerHost = Annotated[str, AfterValidator(_docker_host)]
Url = Annotated[str, AfterValidator(_url)]
Size = Annotated[str, BeforeValidator(_size)]
ImageRef = Annotated[str, AfterValidator(_image_ref)]
Version = Annotated[str, AfterValidator(_version)]
Fraction = Annotated[float, AfterValidator(_fraction)]
Port = Annotated[int, Field(ge=1, le=65535)]
EnvMap = dict[EnvName, Text]


def empty_list() -> list[Any]:
    """``default_factory=list``, cheaper: pydantic inspects every factory's signature, and for the
    builtins ``list`` and ``dict`` that means compiling ``tokenize``'s regexes to parse their text
    signature (about 7 ms of every start)."""
    return []


def empty_dict() -> dict[str, Any]:
    """See ``empty_list``."""
    return {}
