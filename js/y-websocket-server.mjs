// The plain y-websocket server (@y/websocket-server 0.1.1): one document per URL path.
// Env: HOST (default 127.0.0.1), PORT (0 = any free port), YPERSISTENCE (a LevelDB directory:
// documents survive a restart), TOKEN (if set, the upgrade needs ?token=TOKEN, else HTTP 401).
// Prints {"listening": <port>} once it accepts connections.
import http from 'node:http'
import { WebSocketServer } from 'ws'
import { setupWSConnection } from '@y/websocket-server/utils'

const wss = new WebSocketServer({ noServer: true })
wss.on('connection', setupWSConnection)
const server = http.createServer((_req, res) => { res.writeHead(200); res.end('okay') })
server.on('upgrade', (req, socket, head) => {
  const token = new URL(req.url, 'http://x').searchParams.get('token')
  if (process.env.TOKEN && token !== process.env.TOKEN) {
    socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n')
    return
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req))
})
server.listen(Number(process.env.PORT || 0), process.env.HOST || '127.0.0.1', () => {
  console.log(JSON.stringify({ listening: server.address().port }))
})
