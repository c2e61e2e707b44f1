// frossl-hub demo page: plain JavaScript, no build step, no third-party code.
// It calls this service's own JSON API (relative URLs), so it shows what the API does.
"use strict";

const TOP_K = 5;
const NEIGHBOURS = 8;

const state = {
  key: null,        // the API key, in memory only; sent as a Bearer header, never in a URL
  models: [],       // GET v1/models data
  card: null,       // GET v1/models/{name}/card of the selected model
  file: null,       // the last image given
  run: 0,           // increases per request round; stale answers are dropped
  previewUrl: null, // blob: URL of the image shown, revoked when replaced
  plotUrls: [],     // blob: URLs of the card's plots, revoked when the card changes
};

const $ = (id) => document.getElementById(id);

// a new element with an optional class and text
function el(tag, className = "", text = "") {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// ---------------------------------------------------------------- API calls

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.key) headers.set("Authorization", "Bearer " + state.key);
  const started = performance.now();
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    throw new ApiError(0, "network_error", "Cannot reach the service: " + err.message);
  }
  const ms = performance.now() - started;
  if (!response.ok) throw await errorOf(response);
  return { response, ms };
}

async function errorOf(response) {
  let code = "http_error";
  let message = `The service answered ${response.status} ${response.statusText}.`;
  if ((response.headers.get("content-type") || "").includes("json")) {
    const body = await response.json().catch(() => null);
    if (body && body.error) {
      code = body.error.code;
      message = body.error.message;
    }
  }
  return new ApiError(response.status, code, message);
}

async function getJson(path) {
  const { response } = await api(path);
  return response.json();
}

async function postImage(path, file, fields) {
  const form = new FormData();
  form.append("file", file, file.name || "pasted-image");
  for (const [name, value] of Object.entries(fields)) form.append(name, String(value));
  const { response, ms } = await api(path, { method: "POST", body: form });
  return { body: await response.json(), ms };
}

// ---------------------------------------------------------------- messages

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setStatus(message) {
  $("status").textContent = message;
}

function handleError(err) {
  if (err.status === 401) {
    askForKey();
  }
  showError(err.message);
  setStatus("");
}

function askForKey() {
  $("key-panel").hidden = false;
  $("api-key").focus();
}

// ---------------------------------------------------------------- models and cards

async function loadModels() {
  setStatus("Loading the models…");
  let list;
  try {
    list = await getJson("v1/models");
  } catch (err) {
    if (err.status === 503) {
      setStatus(err.message);
      setTimeout(loadModels, 2000);
      return;
    }
    handleError(err);
    return;
  }
  $("key-panel").hidden = true;
  showError("");
  state.models = list.data;
  const select = $("model");
  select.replaceChildren(...list.data.map((model) => {
    const option = el("option");
    option.value = model.name;
    option.textContent = model.default ? `${model.name} (default)` : model.name;
    option.selected = model.default;
    return option;
  }));
  select.disabled = false;
  setStatus("Ready: give an image.");
  await loadCard(select.value);
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${(100 * value).toFixed(2)}%`;
}

function trainingText(m) {  // a chain of --init-from runs is stated by its total
  if (m.total_train_minutes !== undefined) {
    return `${m.total_train_minutes} min, ${m.total_epochs} epochs over ${m.chained_runs} chained runs`;
  }
  if (m.train_minutes === undefined) return "–";
  return `${m.train_minutes} min` + (m.epochs === undefined ? "" : `, ${m.epochs} epochs`);
}

function cardRows(card) {
  const m = card.metrics || {};
  const rows = [
    ["Linear-probe top-1", percent(m.linear_top1)],
    ["kNN top-1", percent(m.knn_top1)],
    ["Untrained ResNet18 (linear probe)", percent(m.random_init_linear_top1)],
    ["Training", trainingText(m)],
    ["Hardware", card.hardware || "–"],
    ["Gallery", card.gallery ? `${card.gallery.size} ${card.gallery.dataset} ${card.gallery.split} images`
      : "none: predictions only"],
  ];
  return rows.flatMap(([term, value]) => [el("dt", "", term), el("dd", "", value)]);
}

async function loadCard(name) {
  state.card = null;
  $("card-numbers").replaceChildren();
  $("plots").replaceChildren();
  state.plotUrls.forEach((url) => URL.revokeObjectURL(url));
  state.plotUrls = [];
  try {
    state.card = await getJson(`v1/models/${encodeURIComponent(name)}/card`);
  } catch (err) {
    handleError(err);
    return;
  }
  const model = state.models.find((m) => m.name === name);
  $("card-name").textContent = model && model.dataset
    ? `${name}: ${model.architecture}, trained on ${model.dataset}` : name;
  $("card-numbers").replaceChildren(...cardRows(state.card));
  await loadPlots(state.card);
}

async function loadPlots(card) {
  const figures = [];
  for (const plot of card.plots) {
    try {
      // fetched (not <img src>) so that the API key travels as a header
      const { response } = await api(plot.url.replace(/^\//, ""));
      const img = el("img", "plot");
      img.src = URL.createObjectURL(await response.blob());
      state.plotUrls.push(img.src);
      img.alt = `Training plot of ${card.name}: ${plot.name}`;
      figures.push(img);
    } catch (err) {
      handleError(err);
    }
  }
  if (state.card === card) $("plots").replaceChildren(...figures);
}

// ---------------------------------------------------------------- one image

async function classify(file) {
  if (!file) return;
  const model = $("model").value;
  if (!model) {
    showError("No model is loaded yet; wait for the model list.");
    return;
  }
  const run = ++state.run;
  state.file = file;
  showError("");
  setStatus(`Sending ${file.name || "the image"} to ${model}…`);
  $("result").hidden = true;
  const withGallery = Boolean(state.card && state.card.gallery);
  const modelInfo = state.models.find((m) => m.name === model);
  const topK = Math.min(TOP_K, modelInfo ? modelInfo.num_classes : TOP_K);
  const requests = [postImage("v1/predictions", file, { model, top_k: topK })];
  if (withGallery) {
    requests.push(postImage("v1/neighbours", file,
      { model, k: Math.min(NEIGHBOURS, state.card.gallery.size) }));
  }
  let answers;
  try {
    answers = await Promise.all(requests);
  } catch (err) {
    if (run === state.run) handleError(err);
    return;
  }
  if (run !== state.run) return;
  showResult(file, answers[0], withGallery ? answers[1] : null, modelInfo);
  setStatus(`Done: ${model}.`);
}

function showResult(file, predictions, neighbours, modelInfo) {
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  $("original").src = state.previewUrl;
  showTop5(predictions.body.data[0].predictions);
  const viewFigure = $("model-view-figure");
  viewFigure.hidden = !neighbours;
  $("neighbours-block").hidden = !neighbours;
  if (neighbours) {
    const item = neighbours.body.data[0];
    $("model-view").src = item.input_image;
    if (modelInfo) {
      const [channels, height, width] = modelInfo.input_size;
      $("model-view-caption").textContent =
        `As the model sees it: ${width}×${height}, ${channels === 1 ? "greyscale" : "colour"}`;
    }
    showNeighbours(item.neighbours);
  }
  const times = [`predictions ${Math.round(predictions.ms)} ms`];
  if (neighbours) times.push(`neighbours ${Math.round(neighbours.ms)} ms`);
  $("latency").textContent = `Request latency (sent in parallel, measured here): ${times.join(", ")}.`;
  $("result").hidden = false;
}

function showTop5(predictions) {
  $("top5").replaceChildren(...predictions.map((p) => {
    const percent = `${(100 * p.score).toFixed(1)}%`;
    const track = el("span", "track");
    track.setAttribute("aria-hidden", "true");  // the score is read out as text
    const fill = el("span", "fill");
    fill.style.width = percent;
    track.append(fill);
    const li = el("li");
    li.append(el("span", "label", p.label), track, el("span", "score", percent));
    return li;
  }));
}

function showNeighbours(items) {
  $("neighbours").replaceChildren(...items.map((n) => {
    const img = el("img");
    img.src = n.image;
    img.alt = `Gallery image ${n.index}: a ${n.label}, similarity ${n.similarity.toFixed(3)}`;
    const caption = el("figcaption");
    caption.append(el("span", "label", n.label), el("span", "similarity", n.similarity.toFixed(3)));
    const figure = el("figure");
    figure.append(img, caption);
    const li = el("li");
    li.append(figure);
    return li;
  }));
}

// ---------------------------------------------------------------- wiring

function firstFile(list) {
  const files = Array.from(list || []);
  return files.find((f) => f.type.startsWith("image/")) || files[0] || null;
}

// A drop zone hands the first image dropped on it to onFile (search.js uses it too).
function wireDropZone(zone, onFile) {
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    event.stopPropagation();
    zone.classList.remove("over");
    onFile(firstFile(event.dataTransfer.files));
  });
}

function wire() {
  $("file").addEventListener("change", (event) => classify(firstFile(event.target.files)));
  $("model").addEventListener("change", async (event) => {
    await loadCard(event.target.value);
    if (state.file) classify(state.file);
  });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("api-key").value.trim() || null;
    $("api-key").value = "";
    loadModels();
  });
  wireDropZone($("drop"), classify);
  // a file dropped elsewhere must not navigate away from the page
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  document.addEventListener("paste", (event) => {
    const file = firstFile(event.clipboardData && event.clipboardData.files);
    if (file) classify(file);
  });
}

wire();
loadModels();
