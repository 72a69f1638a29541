// The demo page: pick a GGUF (URL or file), watch it load, chat with it. ?model=URL preloads a URL.
import * as vireo from '../src/vireo.js';

const $ = (id) => document.getElementById(id);
let model = null;
let messages = [];
let controller = null;

function showError(e) {
  $('error').hidden = false;
  $('error').textContent = e && e.message ? e.message : String(e);
}

function mib(n) { return (n / 1048576).toFixed(n < 10485760 ? 2 : 0) + ' MiB'; }

async function showCapabilities() {
  const caps = await vireo.capabilities();
  const box = $('caps');
  box.hidden = false;
  if (caps.webgpu) {
    box.className = 'notice ok';
    box.textContent = `WebGPU available${caps.adapter ? ': ' + caps.adapter : ''}.`;
  } else {
    box.className = 'notice warn';
    box.textContent = `WebGPU will not be used (${caps.reason}); models run on the CPU with WebAssembly SIMD, which is slower.`;
  }
}

const PHASES = {download: 'Downloading', hash: 'Checking', compile: 'Compiling GPU kernels', upload: 'Loading weights'};

async function loadModel(source) {
  $('error').hidden = true;
  $('load').disabled = true;
  $('progress').hidden = false;
  $('bar').value = 0;
  $('progress-text').textContent = 'Starting…';
  try {
    if (model) await model.unload();
    model = null;
    model = await vireo.load(source, {
      device: $('device').value,
      onProgress: (p) => {
        if (p.fraction !== null) $('bar').value = p.fraction;
        const amount = p.phase === 'compile' ? (n) => String(n) : mib;  // pipelines, not bytes
        $('progress-text').textContent = `${PHASES[p.phase] || p.phase} ${amount(p.done)}` +
                                         (p.total > 0 ? ` of ${amount(p.total)}` : '');
      },
    });
    const i = model.info;
    $('bar').value = 1;
    $('progress-text').textContent = i.fromCache ? 'Loaded from the browser cache.' : 'Loaded.';
    $('model-info').hidden = false;
    $('model-info').textContent =
        `${i.name || i.architecture} · ${mib(i.fileBytes)} · context ${i.contextLength} · ` +
        (i.backend === 'webgpu' ? `WebGPU on ${i.adapter}` : `CPU (WebAssembly, ${i.threads} thread${i.threads > 1 ? 's' : ''})${i.fallbackReason ? ' — ' + i.fallbackReason : ''}`) +
        ` · loaded in ${i.loadSeconds.toFixed(1)} s` + (i.hasChatTemplate ? '' : ' · no chat template: plain User/Assistant turns');
    $('chat').hidden = false;
    messages = [];
    $('log').replaceChildren();
    $('input').focus();
  } catch (e) {
    showError(e);
  } finally {
    $('load').disabled = false;
  }
}

function bubble(role, text) {
  const div = document.createElement('div');
  div.className = 'msg ' + role;
  div.textContent = text;
  $('log').appendChild(div);
  $('log').scrollTop = $('log').scrollHeight;
  return div;
}

async function send(text) {
  if (!model || controller) return;
  messages.push({role: 'user', content: text});
  bubble('user', text);
  const reply = bubble('assistant', '');
  reply.classList.add('streaming');
  controller = new AbortController();
  $('send').disabled = true;
  $('stop').disabled = false;
  let out = '';
  try {
    for await (const piece of model.chat(messages, {
      maxTokens: Number($('max-tokens').value) || 128,
      temperature: Number($('temperature').value),
      signal: controller.signal,
    })) {
      out += piece;
      reply.textContent = out;
      $('log').scrollTop = $('log').scrollHeight;
    }
  } catch (e) {
    if (e.name !== 'AbortError') showError(e);
  } finally {
    reply.classList.remove('streaming');
    messages.push({role: 'assistant', content: out});
    const s = model.lastStats;
    if (s) {
      const decode = s.generatedTokens > 1 && s.decodeSeconds > 0 ? (s.generatedTokens - 1) / s.decodeSeconds : 0;
      const prefill = s.promptSeconds > 0 ? s.promptComputed / s.promptSeconds : 0;
      $('speed').textContent = `${s.generatedTokens} tokens · decode ${decode.toFixed(1)} tok/s · prompt ` +
                               `${prefill.toFixed(1)} tok/s (${s.promptComputed} of ${s.promptTokens} computed) · ` +
                               `first token after ${(s.ttftSeconds * 1000).toFixed(0)} ms · stop: ${s.stopReason}`;
    }
    controller = null;
    $('send').disabled = false;
    $('stop').disabled = true;
    document.body.dataset.replies = String(Number(document.body.dataset.replies || 0) + 1);
  }
}

$('load-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const file = $('file').files[0];
  const url = $('url').value.trim();
  if (file) loadModel(file);
  else if (url) loadModel(url);
  else showError(new Error('Give a model URL or choose a GGUF file.'));
});
$('chat-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('input').value.trim();
  if (!text) return;
  $('input').value = '';
  send(text);
});
$('input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    $('chat-form').requestSubmit();
  }
});
$('stop').addEventListener('click', () => controller && controller.abort());
$('reset').addEventListener('click', () => {
  messages = [];
  $('log').replaceChildren();
});

showCapabilities().catch(showError);
const preset = new URLSearchParams(location.search).get('model');
if (preset) {
  $('url').value = preset;
  const device = new URLSearchParams(location.search).get('device');
  if (device) $('device').value = device;
  loadModel(preset);
}
