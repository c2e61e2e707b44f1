// frossl-hub demo page, search panel: drop an image, see the nearest images of the service's
// own search indexes (`python -m serve --index FOLDER`). Uses app.js's api(), el(), $().
"use strict";

const SEARCH_K = 12;

const search = {
  indexes: [],  // GET v1/indexes data
  run: 0,       // stale answers are dropped
  urls: [],     // blob: URLs of the thumbnails shown, revoked when replaced
  loaded: false, // the index list has been read (the panel shows only with an index)
};

async function loadIndexes() {
  let list;
  try {
    list = await getJson("v1/indexes");
  } catch (err) {
    if (err.status === 503) setTimeout(loadIndexes, 2000);
    return;  // 401: app.js asks for the key; the key form reloads us
  }
  search.indexes = list.data;
  search.loaded = true;
  $("search-panel").hidden = list.data.length === 0;
  $("search-index").replaceChildren(...list.data.map((index) => {
    const option = el("option");
    option.value = index.name;
    option.textContent = `${index.name} (${index.count} images)`;
    return option;
  }));
  $("search-index").disabled = false;
  $("search-status").textContent = "Ready: drop an image to search your images.";
}

function searchError(message) {
  $("search-error").textContent = message;
  $("search-error").hidden = !message;
}

async function thumbnail(hit) {
  const { response } = await api(hit.url.replace(/^\//, ""));  // the key travels as a header
  const url = URL.createObjectURL(await response.blob());
  search.urls.push(url);
  return url;
}

async function searchImage(file) {
  if (!file) return;
  const name = $("search-index").value;
  const index = search.indexes.find((i) => i.name === name);
  if (!index) return;
  const run = ++search.run;
  searchError("");
  $("search-status").textContent = `Searching ${index.name} for ${file.name || "the image"}…`;
  let answer;
  try {
    answer = await postImage("v1/search", file, { index: name, k: Math.min(SEARCH_K, index.count) });
  } catch (err) {
    if (run === search.run) {
      searchError(err.message);
      $("search-status").textContent = "";
    }
    return;
  }
  if (run !== search.run) return;
  search.urls.forEach((url) => URL.revokeObjectURL(url));
  search.urls = [];
  const items = [];
  for (const hit of answer.body.data[0].hits) {
    const img = el("img");
    img.alt = `${hit.path}, similarity ${hit.score.toFixed(3)}`;
    try {
      img.src = await thumbnail(hit);
    } catch (err) {
      searchError(err.message);
    }
    const caption = el("figcaption");
    caption.append(el("span", "path", hit.path), el("span", "similarity", hit.score.toFixed(3)));
    const figure = el("figure");
    figure.append(img, caption);
    const li = el("li");
    li.append(figure);
    items.push(li);
  }
  if (run !== search.run) return;
  $("search-hits").replaceChildren(...items);
  $("search-status").textContent =
    `Top ${items.length} of ${index.count} images in ${index.name} (${Math.round(answer.ms)} ms).`;
}

function wireSearch() {
  $("search-file").addEventListener("change", (e) => searchImage(firstFile(e.target.files)));
  wireDropZone($("search-drop"), searchImage);
  $("key-form").addEventListener("submit", () => setTimeout(loadIndexes, 0));
}

wireSearch();
loadIndexes();
