// The localdepth web page: upload an image, show its depth (2D with a comparison slider, 3D point cloud),
// download PNG16 / NPY / PLY (POST /v1/depth; three.js is bundled in ./vendor), and what is rendered from the
// depth: a 3D photo that plays here and downloads as MP4 (POST /v1/photo3d), a stereo view (POST /v1/stereo).
// Several photos at once, with an any-view model, make a scene instead: POST /v1/scene answers a GLB with
// the fused points and a frustum per camera, shown in the same 3D view.
import {
  Color, PerspectiveCamera, Points, PointsMaterial, Scene, Vector3, WebGLRenderer, OrbitControls, PLYLoader,
  GLTFLoader,
} from './vendor/three-vendor.min.js';

const $ = (id) => document.getElementById(id);
const VIEW_POINTS = 200000; // points in the 3D view (the PLY download has the full budget)
let current = null; // the File being shown
let views = null; // the Files of the scene being shown (several photos)
const anyView = new Set(); // models that take several views together

function setStatus(text, error = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
}

// POST files to an endpoint of the API (the chosen model added); errors as Error('status: detail').
async function post(path, params, field, files) {
  if ($('model').value) params.set('model', $('model').value);
  const body = new FormData();
  for (const file of files) body.append(field, file, file.name || 'image');
  const response = await fetch(`${path}?${params}`, { method: 'POST', body });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch { /* not JSON */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return response;
}

const request = (format, extra = {}) => post('/v1/depth', new URLSearchParams({ format, ...extra }), 'image', [current]);
const requestScene = (format) => post('/v1/scene', new URLSearchParams({ format }), 'images', views);

// Offer a response body as a file download.
async function download(response, name) {
  downloadBlob(await response.blob(), name);
}

function downloadBlob(blob, name) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  setStatus(`Saved ${name}.`);
}

// ---------------------------------------------------------------- 2D: image | depth

function setPicture(img, blob) {
  if (img.src.startsWith('blob:')) URL.revokeObjectURL(img.src);
  return new Promise((resolve, reject) => {
    img.onload = () => resolve();
    img.onerror = () => reject(new Error('the browser cannot show this image'));
    img.src = URL.createObjectURL(blob);
  });
}

async function showDepth() {
  const response = await request('color', { cmap: $('cmap').value });
  const h = response.headers;
  $('info').textContent = `${h.get('X-Depth-Model')} · ${h.get('X-Depth-Kind')} · ` +
    (h.get('X-Depth-Units') === 'm' ? `${(+h.get('X-Depth-Min')).toFixed(2)}–${(+h.get('X-Depth-Max')).toFixed(2)} m`
                                     : 'relative (larger = closer)');
  await setPicture($('depth'), await response.blob());
}

$('slider').addEventListener('input', (e) => $('compare').style.setProperty('--pos', `${e.target.value}%`));
$('side').addEventListener('change', (e) => $('compare').classList.toggle('side', e.target.checked));

// ---------------------------------------------------------------- rendered from the depth: 3D photo, stereo

// A preview of the server's budgets' size: a few seconds at 480 px play at once and download as they are.
const PHOTO3D = { format: 'mp4', seconds: '3', fps: '20', size: '480' };
let photo3dBlob = null;
let stereoBlob = null;
const stem = () => (current.name || 'image').replace(/\.[^.]*$/, '');

async function showPhoto3d() {
  const response = await post('/v1/photo3d', new URLSearchParams({ ...PHOTO3D, path: $('photo3d-path').value }),
                              'image', [current]);
  const h = response.headers;
  photo3dBlob = await response.blob();
  const video = $('photo3d');
  if (video.src.startsWith('blob:')) URL.revokeObjectURL(video.src);
  video.src = URL.createObjectURL(photo3dBlob);
  video.dataset.frames = h.get('X-Video-Frames');
  $('photo3d-info').textContent = `${h.get('X-Video-Frames')} frames, ${h.get('X-Video-Size').replace(',', '×')}, ` +
    `${h.get('X-Video-Path')}`;
  await video.play().catch(() => { /* autoplay refused: the controls still work */ });
}

async function showStereo() {
  const response = await post('/v1/stereo', new URLSearchParams({ format: $('stereo-format').value }), 'image',
                              [current]);
  stereoBlob = await response.blob();
  await setPicture($('stereo'), stereoBlob);
}

$('photo3d-path').addEventListener('change', () => run([showPhoto3d]));
$('stereo-format').addEventListener('change', () => run([showStereo]));
$('download-photo3d').addEventListener('click', () => {
  if (current && photo3dBlob) downloadBlob(photo3dBlob, `${stem()}_3d.mp4`);
});
$('download-stereo').addEventListener('click', () => {
  if (current && stereoBlob) downloadBlob(stereoBlob, `${stem()}_${$('stereo-format').value === 'sbs' ? 'stereo' : 'anaglyph'}.png`);
});

// ---------------------------------------------------------------- 3D: point cloud

const canvas = $('viewer');
let renderer = null;
try {
  renderer = new WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(window.devicePixelRatio);
} catch (err) {
  console.error(err);
}
const scene = new Scene();
scene.background = new Color(0x0c0d10);
const camera = new PerspectiveCamera(60, 4 / 3, 0.01, 1000);
const controls = new OrbitControls(camera, canvas);
let cloud = null;
if (!renderer) $('units').textContent = 'This browser has no WebGL: the 3D view is off (the PLY download works).';

// Render on demand (after a change of view, cloud or size), not in a loop: an idle page costs no CPU.
let pending = false;
function render() {
  if (!renderer || pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    const { clientWidth: w, clientHeight: h } = canvas;
    if (w && h && (canvas.width !== Math.round(w * renderer.getPixelRatio()) || camera.aspect !== w / h)) {
      renderer.setSize(w, h, false);
      camera.aspect = w / h;
      camera.updateProjectionMatrix();
    }
    renderer.render(scene, camera);
  });
}
controls.addEventListener('change', render);
new ResizeObserver(render).observe(canvas);

async function showCloud() {
  if (!renderer) return;
  const response = await request('ply', { max_points: VIEW_POINTS });
  const units = response.headers.get('X-Point-Units');
  const geometry = new PLYLoader().parse(await response.arrayBuffer());
  // OpenCV camera frame (y down, z forward) -> three.js (y up, looking down -z): turn 180° about x
  geometry.rotateX(Math.PI);
  geometry.computeBoundingSphere();
  const { center, radius } = geometry.boundingSphere;
  const count = geometry.getAttribute('position').count;
  clearView();
  const material = new PointsMaterial({ size: 2.5 * radius / Math.sqrt(Math.max(count, 1)), vertexColors: true });
  cloud = new Points(geometry, material);
  scene.add(cloud);
  // start just behind the camera that took the photo (the origin; +z is behind it now), a little off its
  // axis so that the depth shows, looking at the cloud's centre
  lookAt(center, radius, new Vector3(0.1, 0.05, 0.2));
  $('units').textContent = units === 'm' ? 'Units: metres.' :
    'Relative model: the depth scale is unknown, so the 3D shape is only indicative (arbitrary units).';
  canvas.dataset.points = String(count);
}

// Put the viewer at offset * radius from the origin, looking at the centre of what is shown.
function lookAt(center, radius, offset) {
  camera.near = radius / 1000;
  camera.far = radius * 50;
  camera.position.copy(offset.multiplyScalar(radius));
  controls.target.copy(center);
  camera.updateProjectionMatrix();
  controls.update();
  render();
}

function clearView() {
  if (!cloud) return;
  scene.remove(cloud);
  cloud.traverse((o) => { if (o.geometry) o.geometry.dispose(); if (o.material) o.material.dispose(); });
  cloud = null;
}

// ---------------------------------------------------------------- several photos: a scene

async function showScene() {
  const response = await requestScene('glb');
  const units = response.headers.get('X-Depth-Units');
  const count = +response.headers.get('X-Point-Count');
  const cameras = +response.headers.get('X-Scene-Views');
  const data = await response.arrayBuffer();
  if (!renderer) return;
  const gltf = await new Promise((resolve, reject) => new GLTFLoader().parse(data, '', resolve, reject));
  clearView();
  cloud = gltf.scene; // already in three.js axes (y up): the GLB's root node turns the OpenCV world
  scene.add(cloud);
  cloud.updateMatrixWorld(true);
  let sphere = null;
  cloud.traverse((o) => {
    if (o.isPoints) {
      o.material.size = 2;
      o.material.sizeAttenuation = false;
      o.geometry.computeBoundingSphere();
      sphere = o.geometry.boundingSphere.clone().applyMatrix4(o.matrixWorld);
    }
  });
  const center = sphere ? sphere.center : new Vector3();
  const radius = sphere && sphere.radius > 0 ? sphere.radius : 1;
  // from behind the reference camera (the world origin, looking down -z), a little above it
  lookAt(center, radius, new Vector3(0.15, 0.35, 1.2));
  $('units').textContent = `${cameras} cameras, ${count.toLocaleString()} fused points; ` +
    (units === 'm' ? 'units: metres.' : 'relative units (one scale for the whole scene).');
  canvas.dataset.points = String(count);
  canvas.dataset.cameras = String(cameras);
}

async function openScene(files) {
  views = files;
  current = null;
  layout(true);
  await busy(`Making a scene of ${files.length} photos…`, [showScene],
             `Done: a scene of ${files.length} photos. Drop other photos to continue.`);
}

$('download-glb').addEventListener('click', async () => {
  if (!views) return;
  setStatus('Preparing GLB…');
  try {
    await download(await requestScene('glb'), 'scene.glb');
  } catch (err) {
    setStatus(err.message, true);
  }
});

// ---------------------------------------------------------------- input and downloads

// Show the single-image panels, or the scene's (the 3D view only), with nothing in them yet.
function layout(sceneMode) {
  $('result').hidden = false;
  $('flat').hidden = sceneMode;
  $('views3d').hidden = sceneMode;
  $('scene-downloads').hidden = !sceneMode;
  delete canvas.dataset.points;
  delete canvas.dataset.cameras;
}

// Run the parts with the page marked busy; the status then says done, or the error.
async function busy(text, parts, done) {
  setStatus(text);
  document.body.dataset.state = 'busy';
  try {
    await Promise.all(parts.map((f) => f()));
    setStatus(done);
    document.body.dataset.state = 'ready';
  } catch (err) {
    setStatus(err.message, true);
    document.body.dataset.state = 'error';
  }
}

async function run(parts) {
  if (!current) return;
  await busy(`Computing depth for ${current.name || 'the image'}…`, parts,
             `Done: ${current.name || 'image'}. Drop another image to continue.`);
}

async function open(files) {
  files = Array.from(files || []);
  if (!files.length) return;
  if (files.length > 1) {
    views = files; // kept: picking an any-view model then makes the scene
    if (!anyView.has($('model').value)) {
      setStatus(`${files.length} photos: a scene needs an any-view model (Depth Anything 3); pick one above, or drop one photo.`, true);
      return;
    }
    await openScene(files);
    return;
  }
  const file = files[0];
  views = null;
  current = file;
  layout(false);
  try {
    await setPicture($('photo'), file);
  } catch { /* the server may still decode formats the browser cannot show */ }
  await run([showDepth, showCloud, showPhoto3d, showStereo]);
}

$('file').addEventListener('change', (e) => {
  const files = Array.from(e.target.files);
  e.target.value = ''; // choosing the same files again still counts
  open(files);
});
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  open(e.dataTransfer.files);
});
$('cmap').addEventListener('change', () => run([showDepth]));
$('model').addEventListener('change', () => {
  if (!views) run([showDepth, showCloud, showPhoto3d, showStereo]);
  else if (anyView.has($('model').value)) openScene(views);
  else setStatus(`${views.length} photos: a scene needs an any-view model (Depth Anything 3).`, true);
});

const SUFFIX = { png16: '_depth16.png', npy: '_depth.npy', ply: '_depth.ply' };
for (const button of document.querySelectorAll('button[data-format]')) {
  button.addEventListener('click', async () => {
    if (!current) return;
    const format = button.dataset.format;
    setStatus(`Preparing ${format.toUpperCase()}…`);
    try {
      await download(await request(format), (current.name || 'image').replace(/\.[^.]*$/, '') + SUFFIX[format]);
    } catch (err) {
      setStatus(err.message, true);
    }
  });
}

// ---------------------------------------------------------------- models

(async () => {
  try {
    const response = await fetch('/v1/models');
    if (!response.ok) throw new Error(`${response.status}: ${(await response.json()).detail}`);
    const info = await response.json();
    for (const m of info.models) {
      const option = new Option(`${m.name} (${m.units === 'm' ? 'metric' : 'relative'})`, m.name);
      option.selected = m.name === info.default;
      $('model').add(option);
      if (m.views) anyView.add(m.name);
    }
    setStatus('Ready: drop an image.');
    document.body.dataset.state = 'idle';
  } catch (err) {
    setStatus(`Cannot list the models (${err.message}).`, true);
  }
})();
