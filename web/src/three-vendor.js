// The parts of three.js the web page uses, bundled into one offline ES module by `npm run build`.
export {
  BufferGeometry, Color, PerspectiveCamera, Points, PointsMaterial, Scene, Vector3, WebGLRenderer,
} from 'three';
export { OrbitControls } from 'three/examples/jsm/controls/OrbitControls.js';
export { PLYLoader } from 'three/examples/jsm/loaders/PLYLoader.js';
export { GLTFLoader } from 'three/examples/jsm/loaders/GLTFLoader.js';
