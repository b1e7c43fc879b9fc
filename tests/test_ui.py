"""The Dagster UI and the search pages as a person sees them, in headless Chromium (`make ui-check`; marked
`ui`, not in `make test`).

A demo state is ingested with `corpus ingest`, `corpus dev` serves the UI on it, and Selenium reads
the pages: the CLI's run in the Overview timeline, re-executed from its page; a backfill of every book launched by clicking,
run to success; every book's partition of every check passed; a book's metadata on its partition
page; an edited file's book unsynced (and only that book) once the library sensor observes the edit,
fresh again after the sensor's run; a deleted file's book removed by the sensor and listed by no
asset. Screenshots go to bench/results/ui/.
Needs Debian's `chromium` and `chromium-driver` (apt) and the `ui` extra (selenium).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from corpus_assets.definitions import defs
from resources.graph import falkordb_server
from resources.settings import PROJECT_ROOT, SAMPLE_LIBRARY_DIR

pytestmark = pytest.mark.ui
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[ui]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SHOTS = PROJECT_ROOT / "bench" / "results" / "ui"
BOOKS = sorted(path.stem for path in SAMPLE_LIBRARY_DIR.glob("*.txt"))
EDITED = "1952_the-yellow-wallpaper"


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """`corpus ingest` of the sample books, then `corpus dev` on that state: the UI's address, the library."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs chromium and chromedriver (apt install chromium chromium-driver)")
    root = tmp_path_factory.mktemp("ui")
    library = root / "library"
    shutil.copytree(SAMPLE_LIBRARY_DIR, library)
    with _ingested_and_served(root, library, "dev", "/server_info") as url:
        yield url, library


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_the_ui_tells_each_books_story(ui, browser):
    url, library = ui
    SHOTS.mkdir(parents=True, exist_ok=True)

    # The CLI's run is a run of the code location: in the Overview timeline (only it has run so far).
    open_page(browser, f"{url}/overview/activity/timeline")
    assert wait_text(browser, "ingest_books"), page_text(browser)
    browser.save_screenshot(str(SHOTS / "timeline.png"))

    # The CLI's run re-executes from its page as a run of the code location, to success.
    open_page(browser, f"{url}/runs")
    links = [link.get_attribute("href") for link in browser.find_elements(By.XPATH, "//a[contains(@href, '/runs/')]")]
    cli_run = next(link for link in links if re.fullmatch(r".*/runs/[0-9a-f-]{36}", link))
    open_page(browser, cli_run)
    click(browser, "//button[starts-with(normalize-space(), 'Re-execute all')]")
    _wait_for(lambda: browser.current_url.rstrip("/") != cli_run.rstrip("/"), 60, "the re-execution's page")
    rerun = browser.current_url

    def run_status() -> str:
        """The status shown beside the run's short id in its page's header."""
        open_page(browser, rerun, settle=2)
        lines = page_text(browser).splitlines()
        short = rerun.rstrip("/").split("/")[-1][:8]
        return lines[lines.index(short) + 1] if short in lines else ""

    _wait_for(lambda: run_status() == "Success", 600, "the re-execution to succeed")
    browser.save_screenshot(str(SHOTS / "reexecuted_run.png"))

    # A backfill of every book, launched by clicking, as a user re-runs a set of books.
    open_page(browser, f"{url}/asset-groups")
    click(browser, "//button[starts-with(normalize-space(), 'Materialize all')]")
    click(browser, "//button[normalize-space()='All']")
    assert wait_text(browser, f"{len(BOOKS)} partitions"), page_text(browser)
    click(browser, "//button[normalize-space()='Launch backfill']")

    def backfill_status() -> str:
        """The status of the (only) backfill in the list: the line after who launched it."""
        open_page(browser, f"{url}/overview/backfills", settle=2)
        lines = page_text(browser).splitlines()
        return lines[lines.index("Manually launched") + 1] if "Manually launched" in lines else ""

    _wait_for(lambda: backfill_status() == "Success", 600, "the backfill to succeed")
    assert f"{len(BOOKS)} partitions" in page_text(browser), page_text(browser)
    browser.save_screenshot(str(SHOTS / "backfill.png"))
    # Every run of books, the UI's own included, says which books it covers (the tag the run list shows);
    # the backfill's run of the library report covers no book.
    runs = _graphql(url, "{ runsOrError { ... on Runs { results { runId tags { key value } } } } }")
    tags = [{tag["key"]: tag["value"] for tag in run["tags"]} for run in runs["runsOrError"]["results"]]
    of_books = [t for t in tags if {"dagster/asset_partition_range_start", "dagster/partition"} & set(t)]
    assert len(of_books) >= 3 and all("corpus/books" in t for t in of_books), tags
    assert any("dagster/backfill" in t and "corpus/books" in t for t in of_books), tags  # launched from the UI

    # Every book's partition of every check passed: each check's Partitions tab counts them.
    graph = defs.resolve_asset_graph()
    checks = sorted((key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys
                    if graph.get(key.asset_key).partitions_def is not None)
    assert len(checks) == 8
    for asset, check in checks:
        open_page(browser, f"{url}/assets/{asset}?view=checks&checkDetail={check}")
        if check == "chunks_are_findable":  # the check's overview: its description in plain words, no code
            assert wait_text(browser, "Ten of the book's passages"), page_text(browser)
            assert "FINDABLE_SAMPLE" not in page_text(browser)
        click(browser, "//button[normalize-space()='Partitions']")
        assert wait_text(browser, f"Passed ({len(BOOKS)})"), (asset, check, page_text(browser))
        text = page_text(browser)
        assert "Failed (0)" in text and "Missing (0)" in text and "Execution Failed (0)" in text, (asset, check)
        if check == "chunks_are_findable":
            browser.save_screenshot(str(SHOTS / "check_partitions.png"))

    # The backfill re-ran books whose edges were unchanged: their latest materialization still counts them.
    open_page(browser, f"{url}/assets/similar_chunks?view=partitions&partition=1524_hamlet")
    assert wait_text(browser, "similar edges"), page_text(browser)
    assert "unchanged (not rewritten)\ntrue" in page_text(browser).lower()

    # A book's own metadata on its partition page.
    open_page(browser, f"{url}/assets/book_text?view=partitions&partition=1524_hamlet")
    assert wait_text(browser, "section list")
    text = page_text(browser)
    assert "title\nHamlet" in text and "author\nWilliam Shakespeare" in text
    assert "chapters\n20" in text and "parts\n5" in text  # five acts of scenes; contents and cast list apart
    browser.save_screenshot(str(SHOTS / "book_partition.png"))

    # The library report: every book in one table, its check green (materialized by `corpus ingest`).
    open_page(browser, f"{url}/assets/library_report")
    assert wait_text(browser, "book table"), page_text(browser)
    text = page_text(browser)
    assert "books whose stores disagree" in text and all(b in text for b in BOOKS), text
    browser.save_screenshot(str(SHOTS / "library_report.png"))

    # An edited file: the sensor observes its new version, and the book's raw_books partition shows
    # unsynced until the sensor's run reads the file again; the other books stay synced. (Dagster 1.13
    # marks an asset unsynced when its own inputs changed: book_text follows once raw_books has a new
    # data version, and so on down the stages while the run goes.)
    book = library / f"{EDITED}.txt"
    book.write_text(book.read_text(encoding="utf-8") + "\n\nA paragraph added by the UI check.\n", encoding="utf-8")

    def unsynced(book_id: str) -> bool:
        open_page(browser, f"{url}/assets/raw_books?view=partitions&partition={book_id}", settle=1.5)
        return "Unsynced" in page_text(browser)

    _wait_for(lambda: unsynced(EDITED), 120, f"{EDITED} to show unsynced after its edit", pause=0)
    browser.save_screenshot(str(SHOTS / "edited_book_unsynced.png"))
    assert not unsynced("1524_hamlet")
    _wait_for(lambda: not unsynced(EDITED), 300, f"the sensor's run to bring {EDITED} up to date")
    # The sensor's run says which books it covers and why, whole (a tag the UI shows in full).
    open_page(browser, f"{url}/runs")
    assert wait_text(browser, f"corpus/books: {EDITED}") or wait_text(browser, EDITED), page_text(browser)
    assert "corpus/library: 1 new or changed of 3 files" in page_text(browser), page_text(browser)

    # A deleted file: the sensor removes its book, and no asset lists it any more; its history ends
    # with an observation saying it was removed.
    book.unlink()

    def listed(asset: str) -> bool:
        open_page(browser, f"{url}/assets/{asset}?view=partitions", settle=2)
        return EDITED in page_text(browser)

    _wait_for(lambda: not listed("raw_books"), 300, f"the sensor to remove {EDITED}", pause=5)
    for key in graph.get_all_asset_keys():
        if graph.get(key).partitions_def is not None:
            assert not listed(key.to_user_string()), key
    open_page(browser, f"{url}/assets/book_text?view=events")
    assert wait_text(browser, "this book was removed from every store and its partition deleted"), page_text(browser)
    browser.save_screenshot(str(SHOTS / "removed_book.png"))


HOSTILE = "<script>document.title='pwned'</script> [/bold] Title"


@pytest.fixture(scope="module")
def search_pages(tmp_path_factory):
    """`corpus serve` on an ingested library of the sample books, a book with a hostile title, and a
    second edition of Alice (so passages have similar passages in another book)."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs chromium and chromedriver (apt install chromium chromium-driver)")
    root = tmp_path_factory.mktemp("pages")
    library = root / "library"
    shutil.copytree(SAMPLE_LIBRARY_DIR, library)
    alice = (SAMPLE_LIBRARY_DIR / "11_alices-adventures-in-wonderland.txt").read_text(encoding="utf-8")
    (library / "alice-second-edition.txt").write_text(
        alice.replace("Title: Alice’s Adventures in Wonderland", "Title: Alice, a Second Edition"), encoding="utf-8")
    (library / "hostile.txt").write_text(
        f"Title: {HOSTILE}\nAuthor: A. Hostile\n\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n"
        + "A lighthouse keeper wrote <b>bold</b> words in his log every night. " * 80 + "\n", encoding="utf-8")
    with _ingested_and_served(root, library, "serve", "/health") as url:
        yield url


def test_a_reader_searches_reads_in_context_and_follows_a_similar_passage(search_pages, browser):
    url = search_pages
    SHOTS.mkdir(parents=True, exist_ok=True)
    open_page(browser, url, settle=1)
    box = browser.find_element(By.NAME, "q")
    box.send_keys("the rabbit took a watch out of its waistcoat pocket" + Keys.ENTER)  # Enter searches
    assert wait_text(browser, "passages in"), page_text(browser)
    first = browser.find_element(By.CSS_SELECTOR, "article.hit")
    assert "Alice" in first.text and "CHAPTER" in first.text  # the book and where the passage sits
    assert browser.find_elements(By.CSS_SELECTOR, "article.hit mark"), "the query's words are marked"
    browser.save_screenshot(str(SHOTS / "search_page.png"))

    # The passage in its context, then a similar passage in another book.
    first.find_element(By.LINK_TEXT, "in context").click()
    assert wait_text(browser, "next passage"), page_text(browser)
    assert wait_text(browser, "Similar passages in other books"), page_text(browser)
    browser.save_screenshot(str(SHOTS / "passage_in_context.png"))
    here = browser.find_element(By.CSS_SELECTOR, "p.where b").text
    browser.find_element(By.CSS_SELECTOR, "a.similar").click()
    _wait_for(lambda: "/passages/" in browser.current_url and browser.find_elements(By.CSS_SELECTOR, "p.where b"), 30,
              "the similar passage's page")
    assert browser.find_element(By.CSS_SELECTOR, "p.where b").text != here  # another book

    # A book's page: its parts and chapters with sizes, each chapter linking to its passages.
    open_page(browser, f"{url}/books/1524_hamlet", settle=1)
    assert wait_text(browser, "ACT III") and "SCENE II." in page_text(browser)
    browser.save_screenshot(str(SHOTS / "book_page.png"))
    browser.find_element(By.PARTIAL_LINK_TEXT, "SCENE I.").click()
    assert wait_text(browser, "passage "), page_text(browser)

    # The library page, and a hostile title shown as text: no script ran, no markup was read.
    open_page(browser, f"{url}/books", settle=1)
    assert wait_text(browser, "Books by language") and HOSTILE in page_text(browser), page_text(browser)
    assert browser.title != "pwned" and browser.find_elements(By.CSS_SELECTOR, "svg rect")
    browser.save_screenshot(str(SHOTS / "library_page.png"))
    open_page(browser, f"{url}/?q=lighthouse+keeper", settle=1)
    assert HOSTILE in page_text(browser) and browser.title != "pwned"


def open_page(browser, address: str, settle: float = 4) -> None:
    browser.get(address)
    time.sleep(settle)
    for skip in browser.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):  # Dagster's newsletter modal
        skip.click()


def click(browser, xpath: str) -> None:
    _wait_for(lambda: browser.find_elements(By.XPATH, xpath), 30, xpath)
    browser.find_elements(By.XPATH, xpath)[-1].click()
    time.sleep(2)


def page_text(browser) -> str:
    return browser.find_element(By.TAG_NAME, "body").text


def wait_text(browser, text: str, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in page_text(browser):
            return True
        time.sleep(1)
    return False


@contextmanager
def _ingested_and_served(root: Path, library: Path, command: str, ready: str) -> Iterator[str]:
    """`corpus ingest` of `library` into root/state, then `corpus <command>` (dev, serve) on a free
    port: its address while it runs; the state's embedded servers, which the CLI leaves running for
    other processes, stopped after."""
    env = {**os.environ, "CORPUS_STATE_DIR": str(root / "state"), "CORPUS_LIBRARY_DIR": str(library), "COLUMNS": "200"}
    corpus = str(Path(sys.executable).with_name("corpus"))
    ingest = subprocess.run([corpus, "ingest"], env=env, capture_output=True, text=True, timeout=900)
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (root / f"{command}.log").open("w")
    server = subprocess.Popen([corpus, command, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _responds(f"{url}{ready}"), 180, f"corpus {command} to start")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
        falkordb_server.stop_server(root / "state" / "falkordb")
        postmaster = root / "state" / "postgres" / "postmaster.pid"
        if postmaster.exists():
            os.kill(int(postmaster.read_text().split()[0]), signal.SIGINT)


def _graphql(url: str, query: str) -> dict:
    """The UI's own GraphQL API: what its pages are drawn from."""
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def _responds(address: str) -> bool:
    try:
        with urllib.request.urlopen(address, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _wait_for(condition, seconds: float, what: str, pause: float = 2) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(pause)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
